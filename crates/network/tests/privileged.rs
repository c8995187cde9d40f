//! Privileged tests (root): everything happens inside namespaces the tests
//! create, never in the machine's own network namespace.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::{Scratch, Server, fetch, fetch_in, ipam_files, link_namespaces, links, on_node, sh};
use ipnet::IpNet;
use network::{
    HostPortMapping, IpamError, Netns, NetnsError, NetworkError, NodeNetConfig, NodeNetwork,
    Protocol, host_veth_name,
};

const T: Duration = Duration::from_secs(3);

fn cfg(scratch: &Scratch, cidr: &str) -> NodeNetConfig {
    let mut c = NodeNetConfig::new(cidr.parse().unwrap(), scratch.path().join("ipam"));
    c.cluster_cidr = Some("10.244.0.0/16".parse().unwrap());
    c
}

fn sock(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

#[test]
fn netns_create_remove_enter() {
    require_root!("netns_create_remove_enter");
    let mut s = Scratch::new("netns");
    let a = s.netns("a");
    assert!(Netns::exists(&a));
    assert!(matches!(Netns::create(&a), Err(NetnsError::Exists(_))));
    // A fresh namespace holds only a loopback interface.
    assert_eq!(links(&a), vec!["lo".to_string()]);
    Netns::remove(&a).unwrap();
    assert!(!a.exists());
    Netns::remove(&a).unwrap();
    assert!(matches!(
        Netns::enter(&a, || ()),
        Err(NetnsError::NotFound(_))
    ));
}

#[test]
fn pods_reach_each_other_and_the_node() {
    require_root!("pods_reach_each_other_and_the_node");
    let mut s = Scratch::new("pods");
    let node = s.netns("node");
    let pod_a = s.netns("pod-a");
    let pod_b = s.netns("pod-b");
    let config = cfg(&s, "10.244.1.0/24");
    let (a, b) = on_node(&node, || async {
        let net = NodeNetwork::new(config.clone()).unwrap();
        net.ensure_bridge().await.unwrap();
        net.ensure_bridge().await.unwrap(); // idempotent
        let a = net.setup_pod("ns/a", &pod_a, "eth0").await.unwrap();
        let b = net.setup_pod("ns/b", &pod_b, "eth0").await.unwrap();
        // Same pod again: same answer, nothing new.
        assert_eq!(net.setup_pod("ns/a", &pod_a, "eth0").await.unwrap(), a);
        (a, b)
    });
    assert_ne!(a.ip, b.ip);
    let cidr: IpNet = "10.244.1.0/24".parse().unwrap();
    assert!(cidr.contains(&a.ip) && cidr.contains(&b.ip));
    assert_eq!(a.gateway, IpAddr::V4(Ipv4Addr::new(10, 244, 1, 1)));
    assert_eq!(a.host_veth, host_veth_name("ns/a"));
    let node_links = links(&node);
    assert!(node_links.contains(&"flotilla0".to_string()));
    assert!(node_links.contains(&a.host_veth) && node_links.contains(&b.host_veth));
    assert_eq!(sh(&node, "cat /proc/sys/net/ipv4/ip_forward").trim(), "1");
    // Pod side: lo and eth0 up, default route via the gateway.
    let routes = sh(&pod_a, "ip route show default");
    assert!(routes.contains("via 10.244.1.1 dev eth0"), "{routes}");
    assert!(sh(&pod_a, "ip -o link show lo").contains("UP"));

    let _server = Server::start(&pod_a, 8080, "pod-a");
    assert_eq!(
        fetch_in(&pod_b, sock(a.ip, 8080), T).unwrap(),
        format!("pod-a {}", b.ip)
    );
    // The node reaches the pod (from the gateway address).
    assert_eq!(
        fetch_in(&node, sock(a.ip, 8080), T).unwrap(),
        "pod-a 10.244.1.1"
    );
    // The pod reaches itself over loopback.
    assert_eq!(
        fetch_in(&pod_a, "127.0.0.1:8080".parse().unwrap(), T).unwrap(),
        "pod-a 127.0.0.1"
    );

    on_node(&node, || async {
        let net = NodeNetwork::new(config.clone()).unwrap();
        net.teardown_pod("ns/a", &pod_a).await.unwrap();
        net.teardown_pod("ns/a", &pod_a).await.unwrap(); // idempotent
        net.teardown_pod("ns/b", &pod_b).await.unwrap();
        assert!(net.ipam().allocations().unwrap().is_empty());
    });
    let after = links(&node);
    assert!(
        !after.contains(&a.host_veth) && !after.contains(&b.host_veth),
        "{after:?}"
    );
    assert_eq!(links(&pod_a), vec!["lo".to_string()]);
    assert!(fetch_in(&pod_b, sock(a.ip, 8080), Duration::from_millis(300)).is_err());
}

#[test]
fn no_leaks_over_many_cycles() {
    require_root!("no_leaks_over_many_cycles");
    let mut s = Scratch::new("leaks");
    let node = s.netns("node");
    let config = cfg(&s, "10.244.3.0/24");
    on_node(&node, || async {
        NodeNetwork::new(config.clone())
            .unwrap()
            .ensure_bridge()
            .await
            .unwrap();
    });
    let links_before = links(&node);
    let netns_before = s.netns_files();
    let ipam_before = ipam_files(&config.state_dir);
    let pod_path = s.netns_path("pod");
    on_node(&node, || async {
        let net = NodeNetwork::new(config.clone()).unwrap();
        for i in 0..20 {
            let id = format!("cycle-{i}");
            Netns::create(&pod_path).unwrap();
            let st = net.setup_pod(&id, &pod_path, "eth0").await.unwrap();
            assert_eq!(ipam_files(&config.state_dir), 1);
            if i % 5 == 4 {
                // The namespace vanishes first (e.g. the runtime removed it):
                // teardown still releases the address.
                Netns::remove(&pod_path).unwrap();
                net.teardown_pod(&id, &pod_path).await.unwrap();
            } else {
                net.teardown_pod(&id, &pod_path).await.unwrap();
                Netns::remove(&pod_path).unwrap();
            }
            assert!(
                net.ipam().lookup(&id).unwrap().is_none(),
                "{} still allocated",
                st.ip
            );
        }
    });
    assert_eq!(links(&node), links_before);
    assert_eq!(s.netns_files(), netns_before);
    assert_eq!(ipam_files(&config.state_dir), ipam_before);
}

#[test]
fn restart_keeps_allocations() {
    require_root!("restart_keeps_allocations");
    let mut s = Scratch::new("restart");
    let node = s.netns("node");
    let pod_a = s.netns("pod-a");
    let pod_b = s.netns("pod-b");
    let pod_c = s.netns("pod-c");
    let config = cfg(&s, "10.244.4.0/24");
    let (a, b) = on_node(&node, || async {
        let net = NodeNetwork::new(config.clone()).unwrap();
        net.ensure_bridge().await.unwrap();
        let a = net.setup_pod("a", &pod_a, "eth0").await.unwrap();
        let b = net.setup_pod("b", &pod_b, "eth0").await.unwrap();
        (a, b)
    });
    let index_of = |name: &str| {
        // "<index>: <name>..." (sysfs shows the mounter's namespace, not ours).
        let line = sh(&node, &format!("ip -o link show {name}"));
        line.split(':').next().unwrap_or_default().to_string()
    };
    let a_index = index_of(&a.host_veth);
    // A new NodeNetwork (new process, same state dir) keeps both and never
    // hands their addresses to someone else.
    on_node(&node, || async {
        let net = NodeNetwork::new(config.clone()).unwrap();
        net.ensure_bridge().await.unwrap();
        assert_eq!(net.ipam().allocations().unwrap().len(), 2);
        assert_eq!(net.setup_pod("a", &pod_a, "eth0").await.unwrap(), a);
        // Already set up: the veth is kept as it is, not re-created.
        assert_eq!(index_of(&a.host_veth), a_index);
        let c = net.setup_pod("c", &pod_c, "eth0").await.unwrap();
        assert!(c.ip != a.ip && c.ip != b.ip);
        for (id, ns) in [("a", &pod_a), ("b", &pod_b), ("c", &pod_c)] {
            net.teardown_pod(id, ns).await.unwrap();
        }
    });
    let _ = b;
}

#[test]
fn host_ports_and_masquerade() {
    require_root!("host_ports_and_masquerade");
    let mut s = Scratch::new("nat");
    let node = s.netns("node");
    let outside = s.netns("outside");
    let pod = s.netns("pod");
    let other = s.netns("other");
    // The node's uplink to an "outside" network (documentation range).
    link_namespaces(
        &node,
        "uplink0",
        "198.51.100.1/24",
        &outside,
        "ext0",
        "198.51.100.2/24",
    );
    let node_ip: IpAddr = "198.51.100.1".parse().unwrap();
    let outside_ip: IpAddr = "198.51.100.2".parse().unwrap();
    let config = cfg(&s, "10.244.5.0/24");
    let st = on_node(&node, || async {
        let net = NodeNetwork::new(config.clone()).unwrap();
        net.ensure_bridge().await.unwrap();
        net.setup_pod("other", &other, "eth0").await.unwrap();
        net.setup_pod("web", &pod, "eth0").await.unwrap()
    });
    let _pod_server = Server::start(&pod, 8080, "web");
    let _outside_server = Server::start(&outside, 9090, "outside");

    // No hostPort yet: nothing listens on the node.
    assert!(fetch_in(&outside, sock(node_ip, 30080), Duration::from_millis(500)).is_err());
    // Without masquerade the outside network cannot answer the pod (it has no
    // route to pod addresses).
    assert!(fetch_in(&pod, sock(outside_ip, 9090), Duration::from_millis(500)).is_err());

    on_node(&node, || async {
        let net = NodeNetwork::new(config.clone()).unwrap();
        let mapping = HostPortMapping {
            host_port: 30080,
            protocol: Protocol::Tcp,
            pod_ip: st.ip,
            container_port: 8080,
            host_ip: None,
        };
        // A conflicting set is refused and changes nothing.
        let conflict = net
            .set_host_ports(vec![mapping.clone(), mapping.clone()])
            .await;
        assert!(
            matches!(conflict, Err(NetworkError::Firewall(_))),
            "{conflict:?}"
        );
        net.set_host_ports(vec![mapping]).await.unwrap();
        net.ensure_masquerade().await.unwrap();
        // From the node itself (output hook).
        assert_eq!(
            fetch(sock(node_ip, 30080), T).unwrap(),
            format!("web {node_ip}")
        );
    });
    // DNAT from outside; the pod sees the real client address.
    assert_eq!(
        fetch_in(&outside, sock(node_ip, 30080), T).unwrap(),
        format!("web {outside_ip}")
    );
    // Hairpin: pods reach a hostPort of their own node, even their own one
    // (SNAT to the gateway so the reply comes back through the node).
    assert_eq!(
        fetch_in(&other, sock(node_ip, 30080), T).unwrap(),
        "web 10.244.5.1"
    );
    assert_eq!(
        fetch_in(&pod, sock(node_ip, 30080), T).unwrap(),
        "web 10.244.5.1"
    );
    // Masquerade: the outside sees the node's address as the source.
    assert_eq!(
        fetch_in(&pod, sock(outside_ip, 9090), T).unwrap(),
        format!("outside {node_ip}")
    );
    // Traffic inside the cluster CIDR is not masqueraded: node -> pod keeps
    // the gateway source.
    assert_eq!(
        fetch_in(&node, sock(st.ip, 8080), T).unwrap(),
        "web 10.244.5.1"
    );
    let ruleset = sh(&node, "nft list table ip flotilla");
    assert!(
        ruleset.contains(&format!("dnat to {}:8080", st.ip)),
        "{ruleset}"
    );

    // Removing the mappings removes the DNAT; masquerade stays.
    on_node(&node, || async {
        let net = NodeNetwork::new(config.clone()).unwrap();
        net.ensure_masquerade().await.unwrap();
        net.set_host_ports(vec![]).await.unwrap();
        net.remove_firewall().await.unwrap();
        net.teardown_pod("web", &pod).await.unwrap();
        net.teardown_pod("other", &other).await.unwrap();
    });
    assert!(fetch_in(&outside, sock(node_ip, 30080), Duration::from_millis(500)).is_err());
    assert!(sh(&node, "nft list tables").trim().is_empty());
}

#[test]
fn pods_on_two_nodes_via_host_gw_routes() {
    require_root!("pods_on_two_nodes_via_host_gw_routes");
    let mut s = Scratch::new("multinode");
    let node1 = s.netns("node1");
    let node2 = s.netns("node2");
    let pod1 = s.netns("pod1");
    let pod2 = s.netns("pod2");
    link_namespaces(
        &node1,
        "lan0",
        "192.0.2.1/24",
        &node2,
        "lan0",
        "192.0.2.2/24",
    );
    let mut c1 = NodeNetConfig::new("10.244.10.0/24".parse().unwrap(), s.path().join("ipam1"));
    c1.cluster_cidr = Some("10.244.0.0/16".parse().unwrap());
    let mut c2 = NodeNetConfig::new("10.244.20.0/24".parse().unwrap(), s.path().join("ipam2"));
    c2.cluster_cidr = c1.cluster_cidr;
    let p1 = on_node(&node1, || async {
        let net = NodeNetwork::new(c1.clone()).unwrap();
        net.ensure_bridge().await.unwrap();
        net.ensure_masquerade().await.unwrap();
        // Routes are a replace-set: an old entry disappears.
        net.set_node_routes(vec![(
            "10.244.99.0/24".parse().unwrap(),
            "192.0.2.99".parse().unwrap(),
        )])
        .await
        .unwrap();
        net.set_node_routes(vec![(
            "10.244.20.0/24".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
        )])
        .await
        .unwrap();
        assert_eq!(
            net.node_routes().await.unwrap(),
            vec![(
                "10.244.20.0/24".parse().unwrap(),
                "192.0.2.2".parse().unwrap()
            )]
        );
        net.setup_pod("p1", &pod1, "eth0").await.unwrap()
    });
    let p2 = on_node(&node2, || async {
        let net = NodeNetwork::new(c2.clone()).unwrap();
        net.ensure_bridge().await.unwrap();
        net.ensure_masquerade().await.unwrap();
        net.set_node_routes(vec![(
            "10.244.10.0/24".parse().unwrap(),
            "192.0.2.1".parse().unwrap(),
        )])
        .await
        .unwrap();
        net.setup_pod("p2", &pod2, "eth0").await.unwrap()
    });
    let _server = Server::start(&pod2, 8080, "p2");
    // Pod to pod across nodes, without NAT (the cluster CIDR is exempt).
    assert_eq!(
        fetch_in(&pod1, sock(p2.ip, 8080), T).unwrap(),
        format!("p2 {}", p1.ip)
    );
    // Node routes removal: pod2 becomes unreachable from pod1.
    on_node(&node1, || async {
        let net = NodeNetwork::new(c1.clone()).unwrap();
        net.set_node_routes(vec![]).await.unwrap();
        assert!(net.node_routes().await.unwrap().is_empty());
        net.teardown_pod("p1", &pod1).await.unwrap();
    });
    on_node(&node2, || async {
        NodeNetwork::new(c2.clone())
            .unwrap()
            .teardown_pod("p2", &pod2)
            .await
            .unwrap();
    });
}

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    require_root!("bad_input_is_refused_and_leaves_nothing");
    let mut s = Scratch::new("bad");
    let node = s.netns("node");
    let pod = s.netns("pod");
    let other = s.netns("other");
    let config = cfg(&s, "10.244.6.0/30"); // room for exactly one pod
    let missing = s.netns_path("missing");
    let not_netns = s.path().join("plain-file");
    std::fs::write(&not_netns, b"").unwrap();
    on_node(&node, || async {
        let net = NodeNetwork::new(config.clone()).unwrap();
        // Before the bridge exists.
        let e = net.setup_pod("p", &pod, "eth0").await.unwrap_err();
        assert!(matches!(e, NetworkError::NoBridge(_)), "{e}");
        net.ensure_bridge().await.unwrap();
        let baseline = links(&node);
        let e = net.setup_pod("p", &missing, "eth0").await.unwrap_err();
        assert!(
            matches!(e, NetworkError::Netns(NetnsError::NotFound(_))),
            "{e}"
        );
        assert!(e.to_string().contains("does not exist"), "{e}");
        let e = net.setup_pod("p", &not_netns, "eth0").await.unwrap_err();
        assert!(
            matches!(e, NetworkError::Netns(NetnsError::NotNetns(_))),
            "{e}"
        );
        let e = net.setup_pod("p", &pod, "bad/name").await.unwrap_err();
        assert!(matches!(e, NetworkError::InvalidArgument(_)), "{e}");
        let e = net.setup_pod("", &pod, "eth0").await.unwrap_err();
        assert!(
            matches!(e, NetworkError::Ipam(IpamError::InvalidPodId(_))),
            "{e}"
        );
        assert_eq!(links(&node), baseline);
        assert!(net.ipam().allocations().unwrap().is_empty());

        // An interface of that name already in the pod namespace: the veth
        // cannot be made; the address is given back.
        sh(&pod, "ip link add eth0 type veth peer name blocker0");
        let e = net.setup_pod("p", &pod, "eth0").await.unwrap_err();
        assert!(matches!(e, NetworkError::Netlink { .. }), "{e}");
        assert_eq!(links(&node), baseline);
        assert!(net.ipam().allocations().unwrap().is_empty());
        sh(&pod, "ip link del eth0");

        // The /30 holds one pod; the second is refused cleanly.
        net.setup_pod("p", &pod, "eth0").await.unwrap();
        let e = net.setup_pod("q", &other, "eth0").await.unwrap_err();
        assert!(
            matches!(e, NetworkError::Ipam(IpamError::Exhausted { .. })),
            "{e}"
        );
        assert_eq!(links(&other), vec!["lo".to_string()]);
        net.teardown_pod("p", &pod).await.unwrap();
        assert_eq!(links(&node), baseline);

        // Teardown of an unknown pod with a missing namespace is a no-op.
        net.teardown_pod("never", &missing).await.unwrap();

        // Bad routes are refused before anything changes.
        for (cidr, via) in [
            ("10.244.6.0/24", "192.0.2.2"), // overlaps our pod cidr
            ("10.244.7.1/24", "192.0.2.2"), // host bits
            ("fd00::/64", "192.0.2.2"),
            ("10.244.8.0/24", "0.0.0.0"),
        ] {
            let e = net
                .set_node_routes(vec![(cidr.parse().unwrap(), via.parse().unwrap())])
                .await
                .unwrap_err();
            assert!(matches!(e, NetworkError::InvalidArgument(_)), "{cidr}: {e}");
        }
        assert!(net.node_routes().await.unwrap().is_empty());
    });
    // Too-small or invalid pod CIDRs never get as far as the system.
    for bad in ["10.244.6.0/31", "10.244.6.7/24"] {
        let c = NodeNetConfig::new(bad.parse().unwrap(), s.path().join("unused"));
        let e = on_node(&node, || async { NodeNetwork::new(c).map(|_| ()) }).unwrap_err();
        assert!(
            matches!(e, NetworkError::Ipam(IpamError::InvalidCidr { .. })),
            "{e}"
        );
    }
    assert!(!s.path().join("unused").exists());
}

#[test]
fn sandbox_bench_runs_and_cleans_up() {
    require_root!("sandbox_bench_runs_and_cleans_up");
    let scratch_dirs = || {
        let prefix = format!("flotilla-netbench-{}-", std::process::id());
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .count()
    };
    let report = network::bench::sandbox_setup_teardown(3).unwrap();
    assert_eq!(report.cycles, 3);
    assert!(report.setup.mean > Duration::ZERO && report.setup.p99 >= report.setup.p50);
    assert!(report.teardown.max >= report.teardown.mean);
    assert_eq!(scratch_dirs(), 0);
}

/// The benchmark of the issue: `cargo test -p network --release --test
/// privileged -- --ignored --nocapture bench_sandbox_100_cycles`.
#[test]
#[ignore = "benchmark; run explicitly"]
fn bench_sandbox_100_cycles() {
    require_root!("bench_sandbox_100_cycles");
    let report = network::bench::sandbox_setup_teardown(100).unwrap();
    println!("{report}");
}

#[test]
fn concurrent_setups_get_distinct_addresses() {
    require_root!("concurrent_setups_get_distinct_addresses");
    let mut s = Scratch::new("concurrent");
    let node = s.netns("node");
    let pods: Vec<_> = (0..10).map(|i| s.netns(&format!("pod{i}"))).collect();
    let config = cfg(&s, "10.244.7.0/24");
    let before = on_node(&node, || async {
        let net = NodeNetwork::new(config.clone()).unwrap();
        net.ensure_bridge().await.unwrap();
        links(&node)
    });
    // A multi-threaded runtime: its workers are spawned from the node thread,
    // so they live in the node namespace too.
    let statuses = Netns::enter(&node, || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let net = std::sync::Arc::new(NodeNetwork::new(config.clone()).unwrap());
            let tasks: Vec<_> = pods
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let net = net.clone();
                    let p = p.clone();
                    tokio::spawn(async move { net.setup_pod(&format!("c{i}"), &p, "eth0").await })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(
                    tokio::time::timeout(common::TEST_TIMEOUT, t)
                        .await
                        .unwrap()
                        .unwrap()
                        .unwrap(),
                );
            }
            out
        })
    })
    .unwrap();
    let mut ips: Vec<_> = statuses.iter().map(|st| st.ip).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 10);
    // Every pod answers every other one's neighbour: spot-check first and last.
    let _server = Server::start(&pods[9], 8080, "last");
    assert_eq!(
        fetch_in(&pods[0], sock(statuses[9].ip, 8080), T).unwrap(),
        format!("last {}", statuses[0].ip)
    );
    on_node(&node, || async {
        let net = NodeNetwork::new(config.clone()).unwrap();
        let ids: Vec<String> = (0..pods.len()).map(|i| format!("c{i}")).collect();
        let all =
            futures::future::join_all(ids.iter().zip(&pods).map(|(id, p)| net.teardown_pod(id, p)))
                .await;
        assert!(all.iter().all(Result::is_ok), "{all:?}");
        assert!(net.ipam().allocations().unwrap().is_empty());
    });
    assert_eq!(links(&node), before);
}

/// Real processes in the pod namespaces, the way containers will use them:
/// busybox httpd in one pod, busybox wget in another.
#[test]
fn busybox_http_between_pods() {
    require_root!("busybox_http_between_pods");
    if !std::path::Path::new("/bin/busybox").exists() {
        eprintln!("SKIPPED (no /bin/busybox): busybox_http_between_pods");
        return;
    }
    let mut s = Scratch::new("busybox");
    let node = s.netns("node");
    let web = s.netns("web");
    let client = s.netns("client");
    let config = cfg(&s, "10.244.8.0/24");
    let (w, _c) = on_node(&node, || async {
        let net = NodeNetwork::new(config.clone()).unwrap();
        net.ensure_bridge().await.unwrap();
        (
            net.setup_pod("web", &web, "eth0").await.unwrap(),
            net.setup_pod("client", &client, "eth0").await.unwrap(),
        )
    });
    let docroot = s.path().join("www");
    std::fs::create_dir(&docroot).unwrap();
    std::fs::write(docroot.join("index.html"), "hello from busybox\n").unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _httpd = Kill(
        Netns::enter(&web, || {
            std::process::Command::new("/bin/busybox")
                .args(["httpd", "-f", "-p", "8080", "-h"])
                .arg(&docroot)
                .spawn()
        })
        .unwrap()
        .unwrap(),
    );
    // httpd binds asynchronously: retry for a bounded time.
    let url = format!("http://{}:8080/", w.ip);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        // busybox-static 1.35's wget crashes with -T, so bound it ourselves.
        let out = Netns::enter(&client, || {
            let mut child = std::process::Command::new("/bin/busybox")
                .args(["wget", "-q", "-O", "-", &url])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()?;
            let until = std::time::Instant::now() + Duration::from_secs(5);
            while child.try_wait()?.is_none() && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            child.wait_with_output()
        })
        .unwrap()
        .unwrap();
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "wget {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(body, "hello from busybox\n");
    on_node(&node, || async {
        let net = NodeNetwork::new(config.clone()).unwrap();
        net.teardown_pod("web", &web).await.unwrap();
        net.teardown_pod("client", &client).await.unwrap();
    });
}
