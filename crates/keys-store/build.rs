//! Rebuilds the crate when a migration is added or changed: `sqlx::migrate!`
//! embeds the migration files at compile time, and without this cargo does
//! not notice a new file (sqlx's documented recommendation).

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
