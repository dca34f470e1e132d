//! A standalone in-memory fake Swift endpoint (the one the tests use), for measuring
//! `cairn bench` itself: `cargo run --release -p cairn-bench --example fake_swift` prints
//! its auth URL (user `test:tester`, key `testing`) and serves until killed.

#[path = "../tests/support/fake_swift.rs"]
mod fake_swift;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let fake = fake_swift::start().await;
    println!("{}", fake.auth_url());
    std::future::pending::<()>().await;
}
