//! Shared helpers for the pmd kernel tests: network namespaces with veth
//! pairs, hugepage areas, AF_PACKET sockets and test frames.
#![allow(dead_code)]

pub mod hugepages;
pub mod netns;
pub mod packet;
pub mod xdp;
