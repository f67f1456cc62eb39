pub fn main(_: &crate::util::Args) -> Result<(), String> { Err("todo".into()) }
pub fn child(_: &crate::util::Args) -> Result<(), String> { Err("todo".into()) }
