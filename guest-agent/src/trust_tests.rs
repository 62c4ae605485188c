use super::*;
use std::os::unix::fs::MetadataExt;

/// Shaped like certificates; the contents are never decoded.
const CA_A: &str = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUAAAA\nYWJjZGVm+/==\n-----END CERTIFICATE-----\n";
const CA_B: &str =
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUBBBB\n-----END CERTIFICATE-----\n";
const SYSTEM: &str = "-----BEGIN CERTIFICATE-----\nU1lTVEVNMQ==\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nU1lTVEVNMg==\n-----END CERTIFICATE-----\n";

fn block(certs: &str) -> String {
    format!("{MARK_BEGIN}\n{certs}{MARK_END}\n")
}

#[test]
fn accepts_certificate_blocks_and_whitespace() {
    assert_eq!(normalize(CA_A), Ok(CA_A.to_string()));
    let messy = "\r\n  -----BEGIN CERTIFICATE-----\r\n\tMIIBszCCAVmgAwIBAgIUAAAA  \r\n\r\nYWJjZGVm+/==\r\n-----END CERTIFICATE-----\n\n-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUBBBB\n-----END CERTIFICATE-----";
    assert_eq!(normalize(messy), Ok(format!("{CA_A}{CA_B}")));
}

#[test]
fn refuses_anything_else() {
    let cases: [(&str, PemError); 9] = [
        ("", PemError::NoCertificate),
        (" \n\t\n", PemError::NoCertificate),
        (&format!("hello\n{CA_A}"), PemError::Stray(1)),
        (&format!("{CA_A}# trailing comment\n"), PemError::Stray(5)),
        (
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            PemError::Stray(1),
        ),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n",
            PemError::Unterminated(1),
        ),
        (
            "-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----\n",
            PemError::Empty(3),
        ),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            PemError::NotBase64(3),
        ),
        // Our own marker can never get into the bundle through the CA.
        (
            &format!("-----BEGIN CERTIFICATE-----\n{MARK_END}\n-----END CERTIFICATE-----\n"),
            PemError::NotBase64(2),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(normalize(text), Err(want), "{text:?}");
    }
    let huge = format!("{CA_A}{}", " ".repeat(MAX_CA_PEM));
    assert_eq!(normalize(&huge), Err(PemError::TooLarge(huge.len())));
}

#[test]
fn fresh_bundle_gets_the_block_at_its_end() {
    assert_eq!(
        bundle_with(Some(SYSTEM), CA_A),
        format!("{SYSTEM}{}", block(CA_A))
    );
}

#[test]
fn same_ca_again_changes_nothing() {
    let once = bundle_with(Some(SYSTEM), CA_A);
    assert_eq!(bundle_with(Some(&once), CA_A), once);
}

#[test]
fn another_ca_replaces_the_old_block() {
    let once = bundle_with(Some(SYSTEM), CA_A);
    assert_eq!(
        bundle_with(Some(&once), CA_B),
        format!("{SYSTEM}{}", block(CA_B))
    );
    // Wherever the old block was, what surrounds it stays.
    let middle = format!("{SYSTEM}{}# added later\n", block(CA_A));
    assert_eq!(
        bundle_with(Some(&middle), CA_B),
        format!("{SYSTEM}# added later\n{}", block(CA_B))
    );
    // A begin marker whose end was edited away runs to the end.
    let cut = format!("{SYSTEM}{MARK_BEGIN}\n{CA_A}");
    assert_eq!(
        bundle_with(Some(&cut), CA_B),
        format!("{SYSTEM}{}", block(CA_B))
    );
}

#[test]
fn missing_or_empty_bundle_holds_only_the_block() {
    assert_eq!(bundle_with(None, CA_A), block(CA_A));
    assert_eq!(bundle_with(Some(""), CA_A), block(CA_A));
}

#[test]
fn bundle_without_trailing_newline_gets_one() {
    let bare = SYSTEM.trim_end();
    assert_eq!(
        bundle_with(Some(bare), CA_A),
        format!("{SYSTEM}{}", block(CA_A))
    );
    let crlf = format!("{}\r\n", block(CA_A).trim_end().replace('\n', "\r\n"));
    assert_eq!(
        bundle_with(Some(&format!("{SYSTEM}{crlf}")), CA_B),
        format!("{SYSTEM}{}", block(CA_B))
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("paddock-trust-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").mode() & 0o7777
}

#[test]
fn installs_into_missing_directories_then_replaces() {
    let dir = scratch("fresh");
    let ca = dir.join("usr/local/share/ca-certificates/paddock-egress.crt");
    let bundle = dir.join("etc/ssl/certs/ca-certificates.crt");
    assert_eq!(install(&ca, &bundle, CA_A).expect("install"), 1);
    assert_eq!(std::fs::read_to_string(&ca).expect("ca"), CA_A);
    assert_eq!(
        std::fs::read_to_string(&bundle).expect("bundle"),
        block(CA_A)
    );
    assert_eq!((mode(&ca), mode(&bundle)), (0o644, 0o644));

    let both = format!("{CA_B}{CA_A}");
    assert_eq!(install(&ca, &bundle, &both).expect("again"), 2);
    assert_eq!(std::fs::read_to_string(&ca).expect("ca"), both);
    assert_eq!(
        std::fs::read_to_string(&bundle).expect("bundle"),
        block(&both)
    );
    // No temporary files left behind.
    let left = std::fs::read_dir(bundle.parent().expect("dir"))
        .expect("list")
        .count();
    assert_eq!(left, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_symlinked_bundle_is_changed_where_it_points() {
    let dir = scratch("link");
    let real = dir.join("pki/tls-ca-bundle.pem");
    std::fs::create_dir_all(real.parent().expect("dir")).expect("mkdir");
    std::fs::create_dir_all(dir.join("certs")).expect("mkdir");
    std::fs::write(&real, SYSTEM).expect("write");
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let bundle = dir.join("certs/ca-certificates.crt");
    std::os::unix::fs::symlink(&real, &bundle).expect("symlink");
    install(&dir.join("ca.crt"), &bundle, CA_A).expect("install");
    assert!(std::fs::symlink_metadata(&bundle)
        .expect("lstat")
        .file_type()
        .is_symlink());
    let want = format!("{SYSTEM}{}", block(CA_A));
    assert_eq!(std::fs::read_to_string(&real).expect("read"), want);
    assert_eq!(mode(&real), 0o644);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_invalid_ca_touches_nothing() {
    let dir = scratch("invalid");
    let (ca, bundle) = (dir.join("ca.crt"), dir.join("bundle.crt"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(&bundle, SYSTEM).expect("write");
    let err = install(&ca, &bundle, "not a certificate").expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(!ca.exists());
    assert_eq!(std::fs::read_to_string(&bundle).expect("read"), SYSTEM);
    let _ = std::fs::remove_dir_all(&dir);
}
