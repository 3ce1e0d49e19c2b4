//! SQL Server runs of the scenarios are compiled in when `HERALD_TEST_MSSQL` is set; without
//! it they are `#[ignore]`d with the reason, so the summary shows them as skipped.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(mssql_tests)");
    println!("cargo::rerun-if-env-changed=HERALD_TEST_MSSQL");
    if std::env::var_os("HERALD_TEST_MSSQL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=mssql_tests");
    }
}
