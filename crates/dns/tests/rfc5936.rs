//! Zone transfer (AXFR, RFC 5936) signed with TSIG (RFC 8945 §5.3.1: every
//! message of a multi-message answer carries a MAC chained to the previous
//! one) against a real BIND 9, cross-checked with `dig`.

use std::time::{SystemTime, UNIX_EPOCH};

use certkeeper_dns::{
    DnsError, RecordData, Server, TsigAlgorithm, TsigKey, axfr, fqdn, soa_serial,
};
use certkeeper_harness::Bind;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn key(bind: &Bind, secret_b64: &str) -> TsigKey {
    TsigKey::from_base64(bind.tsig_key_name(), TsigAlgorithm::HmacSha256, secret_b64).expect("key")
}

#[test]
fn section_2_2_a_multi_message_transfer_is_complete_and_every_mac_verifies() {
    let bind = Bind::start().expect("BIND");
    // ~2000 records of ~100 bytes: more than one 64 KiB message.
    // (One UPDATE is one message too: added in batches.)
    for batch in 0..10 {
        let mut commands = String::new();
        for i in batch * 200..(batch + 1) * 200 {
            commands.push_str(&format!(
                "update add r{i}.example.test. 60 TXT \"{}\"\n",
                "x".repeat(80)
            ));
        }
        bind.nsupdate(&commands).expect("nsupdate");
    }
    let zone = fqdn(bind.zone()).expect("zone");
    let server = Server::new(bind.addr());
    let (serial, transfer) = rt().block_on(async {
        let serial = soa_serial(&server, &zone).await.expect("SOA");
        let t = axfr(&server, &zone, &key(&bind, bind.tsig_secret_b64()), now())
            .await
            .expect("AXFR");
        (serial, t)
    });
    let dig_serial: u32 = bind.dig(bind.zone(), "SOA").expect("dig")[0]
        .split_whitespace()
        .nth(2)
        .expect("serial field")
        .parse()
        .expect("number");
    assert_eq!(serial, dig_serial);
    assert_eq!(transfer.serial, dig_serial);
    let txt = transfer
        .records
        .iter()
        .filter(|r| matches!(r.data, RecordData::TXT(_)) && r.name.to_ascii().starts_with('r'))
        .count();
    assert_eq!(txt, 2000, "every record of the zone, across messages");
}

#[test]
fn a_wrong_secret_gets_no_zone() {
    let bind = Bind::start().expect("BIND");
    let zone = fqdn(bind.zone()).expect("zone");
    let server = Server::new(bind.addr());
    let wrong = key(&bind, "c2VjcmV0IHRoYXQgaXMgbm90IHRoZSBzZXJ2ZXJzIG9uZQ==");
    let err = rt()
        .block_on(axfr(&server, &zone, &wrong, now()))
        .expect_err("refused");
    assert!(matches!(err, DnsError::BadSig { .. }), "{err}");
}
