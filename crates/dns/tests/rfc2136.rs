//! RFC 2136 UPDATE and RFC 8945 TSIG against a real BIND 9, cross-checked
//! with `dig` and `nsupdate`. Test names carry the RFC section they check.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use certkeeper_dns::{
    DnsError, Propagation, Server, TsigAlgorithm, TsigKey, Update, UpdateClient, discover_zone,
    follow_cname, fqdn, nameservers, wait_for_txt,
};
use certkeeper_harness::Bind;
use certkeeper_proto::{FakeClock, SystemClock};
use hickory_proto::rr::RData;
use hickory_proto::rr::rdata::TXT;

fn txt(v: &str) -> RData {
    RData::TXT(TXT::new(vec![v.to_owned()]))
}

fn client(bind: &Bind) -> UpdateClient {
    let key = TsigKey::from_base64(
        bind.tsig_key_name(),
        TsigAlgorithm::HmacSha256,
        bind.tsig_secret_b64(),
    )
    .expect("key");
    UpdateClient::new(Server::new(bind.addr()), key, Arc::new(SystemClock))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn section_2_5_4_delete_rr_removes_only_our_record() {
    let bind = Bind::start().expect("BIND");
    let name = "_acme-challenge.www.example.test.";
    bind.nsupdate(&format!("update add {name} 60 TXT \"someone-else\""))
        .expect("nsupdate");
    let c = client(&bind);
    rt().block_on(async {
        let zone = fqdn("example.test").expect("zone");
        let mut add = Update::new(zone.clone());
        add.add(fqdn(name).expect("name"), 60, txt("ours"));
        c.send(&add).await.expect("add");
        let mut both = bind.dig(name, "TXT").expect("dig");
        both.sort();
        assert_eq!(both, vec!["\"ours\"", "\"someone-else\""]);

        let mut del = Update::new(zone);
        del.delete_rr(fqdn(name).expect("name"), txt("ours"));
        c.send(&del).await.expect("delete");
    });
    assert_eq!(
        bind.dig(name, "TXT").expect("dig"),
        vec!["\"someone-else\""]
    );
}

#[test]
fn section_2_5_2_delete_rrset_and_section_2_4_prerequisites() {
    let bind = Bind::start().expect("BIND");
    let name = "_acme-challenge.pre.example.test.";
    let c = client(&bind);
    rt().block_on(async {
        let zone = fqdn("example.test").expect("zone");
        let n = fqdn(name).expect("name");
        let mut add = Update::new(zone.clone());
        add.require_rrset_absent(n.clone(), hickory_proto::rr::RecordType::TXT)
            .add(n.clone(), 60, txt("a"))
            .add(n.clone(), 60, txt("b"));
        c.send(&add).await.expect("add when absent");
        // §2.4.3 now fails: the RRset exists, so nothing of this update applies.
        let mut again = Update::new(zone.clone());
        again
            .require_rrset_absent(n.clone(), hickory_proto::rr::RecordType::TXT)
            .add(n.clone(), 60, txt("c"));
        let e = c.send(&again).await.expect_err("prerequisite");
        assert!(matches!(e, DnsError::Prerequisite { .. }), "{e}");
        assert!(e.to_string().contains("YXRRSET"), "{e}");
        let mut del = Update::new(zone);
        del.require_rr(n.clone(), txt("a"))
            .delete_rrset(n, hickory_proto::rr::RecordType::TXT);
        // §2.4.2 value-dependent: the RRset is {a, b}, not {a}: refused.
        let e = c
            .send(&del)
            .await
            .expect_err("value-dependent prerequisite");
        assert!(e.to_string().contains("NXRRSET"), "{e}");
    });
    let mut left = bind.dig(name, "TXT").expect("dig");
    left.sort();
    assert_eq!(left, vec!["\"a\"", "\"b\""]);
    rt().block_on(async {
        let mut del = Update::new(fqdn("example.test").expect("zone"));
        del.delete_rrset(fqdn(name).expect("n"), hickory_proto::rr::RecordType::TXT);
        c.send(&del).await.expect("delete rrset");
    });
    assert!(bind.dig(name, "TXT").expect("dig").is_empty());
}

#[test]
fn rfc8945_wrong_secret_is_badsig_and_wrong_name_is_badkey() {
    let bind = Bind::start().expect("BIND");
    let name = "_acme-challenge.tsig.example.test.";
    rt().block_on(async {
        let zone = fqdn("example.test").expect("zone");
        let mut add = Update::new(zone);
        add.add(fqdn(name).expect("name"), 60, txt("x"));

        let wrong_secret = TsigKey::from_base64(
            bind.tsig_key_name(),
            TsigAlgorithm::HmacSha256,
            "d3Jvbmcgc2VjcmV0IHdyb25nIHNlY3JldCB3cm9uZyE=",
        )
        .expect("key");
        let c = UpdateClient::new(
            Server::new(bind.addr()),
            wrong_secret,
            Arc::new(SystemClock),
        );
        let e = c.send(&add).await.expect_err("bad secret");
        assert!(matches!(e, DnsError::BadSig { .. }), "{e}");
        assert!(e.to_string().contains("secret does not match"), "{e}");

        let wrong_name = TsigKey::from_base64(
            "nobody-knows-me.",
            TsigAlgorithm::HmacSha256,
            bind.tsig_secret_b64(),
        )
        .expect("key");
        let c = UpdateClient::new(Server::new(bind.addr()), wrong_name, Arc::new(SystemClock));
        let e = c.send(&add).await.expect_err("bad key name");
        assert!(matches!(e, DnsError::BadKey { .. }), "{e}");
        assert!(e.to_string().contains("nobody-knows-me."), "{e}");

        // Right name and secret, other algorithm: BIND does not know that key either.
        let wrong_alg = TsigKey::from_base64(
            bind.tsig_key_name(),
            TsigAlgorithm::HmacSha512,
            bind.tsig_secret_b64(),
        )
        .expect("key");
        let c = UpdateClient::new(Server::new(bind.addr()), wrong_alg, Arc::new(SystemClock));
        let e = c.send(&add).await.expect_err("bad algorithm");
        assert!(e.to_string().contains("hmac-sha512"), "{e}");

        // RFC 8945 §5.2.3: a clock an hour off is BADTIME, and we say so.
        let key = TsigKey::from_base64(
            bind.tsig_key_name(),
            TsigAlgorithm::HmacSha256,
            bind.tsig_secret_b64(),
        )
        .expect("key");
        let skewed = Arc::new(FakeClock::new(
            certkeeper_proto::Clock::now(&SystemClock) - 3600,
        ));
        let c = UpdateClient::new(Server::new(bind.addr()), key, skewed);
        let e = c.send(&add).await.expect_err("skew");
        assert!(matches!(e, DnsError::BadTime { .. }), "{e}");
        assert!(e.to_string().contains("clock"), "{e}");
    });
    assert!(
        bind.dig(name, "TXT").expect("dig").is_empty(),
        "nothing was added"
    );
}

#[test]
fn a_zone_without_allow_update_is_refused_by_name() {
    let bind = Bind::start().expect("BIND");
    let c = client(&bind);
    let name = "_acme-challenge.locked.test.";
    rt().block_on(async {
        let mut add = Update::new(fqdn(bind.locked_zone()).expect("zone"));
        add.add(fqdn(name).expect("name"), 60, txt("x"));
        let e = c.send(&add).await.expect_err("refused");
        let msg = e.to_string();
        assert!(matches!(e, DnsError::Refused { .. }), "{msg}");
        assert!(
            msg.contains("does not allow updates to locked.test. with key certkeeper-test."),
            "{msg}"
        );
        // A name outside the zone sent: NOTZONE.
        let mut outside = Update::new(fqdn("example.test").expect("zone"));
        outside.add(fqdn("x.delegated.test").expect("name"), 60, txt("x"));
        let e = c.send(&outside).await.expect_err("notzone");
        assert!(matches!(e, DnsError::NotZone { .. }), "{e}");
    });
    assert!(bind.dig(name, "TXT").expect("dig").is_empty());
}

#[test]
fn a_large_update_goes_over_tcp() {
    let bind = Bind::start().expect("BIND");
    let c = client(&bind);
    let name = "big.example.test.";
    // 8 strings of 200 bytes: far over 512 bytes, so UDP is never tried.
    let strings: Vec<String> = (0..8).map(|i| format!("{i}{}", "x".repeat(199))).collect();
    rt().block_on(async {
        let mut add = Update::new(fqdn("example.test").expect("zone"));
        add.add(
            fqdn(name).expect("name"),
            60,
            RData::TXT(TXT::new(strings.clone())),
        );
        c.send(&add).await.expect("large update");
    });
    let got = bind.dig(name, "TXT").expect("dig");
    assert_eq!(got.len(), 1);
    assert!(got[0].contains(&strings[7]), "{got:?}");
}

#[test]
fn zones_are_found_by_walking_soa_and_cnames_are_followed() {
    let bind = Bind::start().expect("BIND");
    bind.nsupdate("update add _acme-challenge.cn.example.test. 60 CNAME cn.delegated.test.")
        .expect("nsupdate");
    let server = Server::new(bind.addr());
    rt().block_on(async {
        let z = discover_zone(
            &server,
            &fqdn("_acme-challenge.a.b.example.test").expect("n"),
        )
        .await
        .expect("zone");
        assert_eq!(z.to_string(), "example.test.");
        let z = discover_zone(&server, &fqdn("x.delegated.test").expect("n"))
            .await
            .expect("zone");
        assert_eq!(z.to_string(), "delegated.test.");
        let z = discover_zone(&server, &fqdn("example.test").expect("n"))
            .await
            .expect("apex");
        assert_eq!(z.to_string(), "example.test.");
        let e = discover_zone(&server, &fqdn("nowhere.invalid").expect("n"))
            .await
            .expect_err("no zone");
        assert!(e.to_string().contains("set zone explicitly"), "{e}");

        let t = follow_cname(
            &server,
            &fqdn("_acme-challenge.cn.example.test").expect("n"),
        )
        .await
        .expect("cname");
        assert_eq!(t.to_string(), "cn.delegated.test.");
        let t = follow_cname(
            &server,
            &fqdn("_acme-challenge.plain.example.test").expect("n"),
        )
        .await
        .expect("no cname");
        assert_eq!(t.to_string(), "_acme-challenge.plain.example.test.");
    });
}

#[test]
fn propagation_waits_for_every_authoritative_server_and_names_the_lagging_one() {
    let primary = Bind::start_with_secondary().expect("primary");
    let secondary = Bind::start_secondary(&primary).expect("secondary");
    // Both listen on 127.0.0.1: ns2 is found on its own port.
    let overrides = BTreeMap::from([(fqdn("ns2.example.test").expect("ns2"), secondary.addr())]);
    let c = client(&primary);
    let zone = fqdn("example.test").expect("zone");
    let name = fqdn("_acme-challenge.prop.example.test").expect("name");
    let how = Propagation {
        timeout: Duration::from_secs(30),
        ..Propagation::default()
    };
    rt().block_on(async {
        let info = nameservers(c.server(), &zone, primary.port(), &overrides)
            .await
            .expect("ns");
        let mut addrs: Vec<_> = info.servers.iter().map(|(_, a)| *a).collect();
        addrs.sort();
        let mut want = vec![primary.addr(), secondary.addr()];
        want.sort();
        assert_eq!(addrs, want, "{info:?}");

        let mut add = Update::new(zone.clone());
        add.add(name.clone(), 60, txt("v1"));
        c.send(&add).await.expect("add");
        wait_for_txt(&how, &info, &[(name.clone(), "v1".into())])
            .await
            .expect("both serve it");
    });
    // Confirmed by dig at each server, not just by our own check.
    assert_eq!(
        secondary
            .dig("_acme-challenge.prop.example.test", "TXT")
            .expect("dig"),
        vec!["\"v1\""]
    );

    drop(secondary);
    let short = Propagation {
        timeout: Duration::from_secs(3),
        ..Propagation::default()
    };
    rt().block_on(async {
        let info = nameservers(c.server(), &zone, primary.port(), &overrides)
            .await
            .expect("ns");
        let mut add = Update::new(zone.clone());
        add.add(name.clone(), 60, txt("v2"));
        c.send(&add).await.expect("add");
        let e = wait_for_txt(&short, &info, &[(name.clone(), "v2".into())])
            .await
            .expect_err("the secondary is down");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!(
                "ns2.example.test. ({})",
                overrides.values().next().expect("ns2")
            )),
            "{msg}"
        );
        assert!(
            !msg.contains("ns.example.test."),
            "the primary is not lagging: {msg}"
        );
    });
}

/// A server that never answers (a real UDP socket on loopback that reads
/// and drops everything: a fault BIND cannot be made to produce) gives a
/// timeout naming the server and what to check.
#[test]
fn a_silent_server_is_a_timeout_that_names_it() {
    rt().block_on(async {
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = silent.local_addr().expect("addr");
        let drain = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                if silent.recv(&mut buf).await.is_err() {
                    return;
                }
            }
        });
        let key = TsigKey::from_base64("k.", TsigAlgorithm::HmacSha256, "c2VjcmV0").expect("key");
        let server = Server {
            timeout: Duration::from_millis(300),
            ..Server::new(addr)
        };
        let c = UpdateClient::new(server, key, Arc::new(SystemClock));
        let mut add = Update::new(fqdn("example.test").expect("zone"));
        add.add(fqdn("x.example.test").expect("name"), 60, txt("x"));
        let e = c.send(&add).await.expect_err("timeout");
        assert!(matches!(e, DnsError::Timeout { .. }), "{e}");
        assert!(e.is_retryable());
        let msg = e.to_string();
        assert!(
            msg.contains(&addr.to_string()) && msg.contains("firewall"),
            "{msg}"
        );
        drain.abort();
    });
}
