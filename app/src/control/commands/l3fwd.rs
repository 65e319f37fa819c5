//! `show l3fwd`, `route add|del|lookup`, `flow add|del`: the router's
//! run-time tables through the command table (the socket's older
//! `/l3fwd/...` paths answer the same, [`crate::fwd::l3fwd::control`]).

use super::show::json_text;
use crate::control::{Control, Reply};
use crate::dataplane::Dataplane;
use serde_json::Value;

/// `/l3fwd{path} ARGS` as a command reply (its `{"error"}` an error).
fn l3(dp: &Dataplane, path: &str, args: &[&str]) -> Result<Reply, String> {
    let v = crate::fwd::l3fwd::control::answer(&format!("{path} {}", args.join(" ")), dp);
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return Err(e.to_string());
    }
    Ok(Reply {
        text: json_text(&v),
        data: v,
    })
}

pub(super) fn show_l3fwd(
    _c: &mut Control,
    dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
    super::no_args(args)?;
    l3(dp, "", args)
}

pub(super) fn route_add(
    _c: &mut Control,
    dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
    l3(dp, "/route/add", args)
}

pub(super) fn route_del(
    _c: &mut Control,
    dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
    l3(dp, "/route/del", args)
}

pub(super) fn route_lookup(
    _c: &mut Control,
    dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
    l3(dp, "/lookup", args)
}

pub(super) fn flow_add(
    _c: &mut Control,
    dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
    l3(dp, "/flow/add", args)
}

pub(super) fn flow_del(
    _c: &mut Control,
    dp: &mut Dataplane,
    args: &[&str],
) -> Result<Reply, String> {
    l3(dp, "/flow/del", args)
}
