//! External memory for xfwd: hugepages the application allocates itself
//! ([`extmem`]), a registry of regions with their IOVAs ([`registry`], the
//! `rte_extmem_register` analogue) and an mbuf pool carved from a registered
//! region ([`pool`], [`mbuf`]).
#![deny(unsafe_code)]

pub mod caps;
