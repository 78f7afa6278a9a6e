//! Print the permission matrix of a policy given on stdin, or of the dev policy.
use std::io::Read;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let text = if text.trim().is_empty() { paysys_policies::DEV_POLICY.to_owned() } else { text };
    match paysys_policies::Policy::from_toml(&text) {
        Ok(policy) => print!("{}", policy.permission_matrix()),
        Err(e) => println!("refused: {e}"),
    }
    Ok(())
}
