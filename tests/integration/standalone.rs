//! Tier 4: the built `vane` binary on a temporary manifests directory, with real origins.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

use crate::support::binary::{write_atomically, Vane};
use crate::support::client::{client, get, status_of};
use crate::support::fixtures::{backend, docs, ingress, single_route, INGRESS_CLASS};
use crate::support::origin::{self, generated_body, Origin, Origins};
use crate::support::wait::eventually;

const MIB: u64 = 1024 * 1024;

/// Waits (bounded) until `origin` has served at least `hits` requests.
async fn until_hits(origin: &Origin, hits: usize) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while origin.hits() < hits {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{} got {} of {hits} requests within 10 s",
            origin.name,
            origin.hits()
        )
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_a_backend_moves_traffic_without_failing_a_request() {
    let stable = origin::start(2).await;
    let before = origin::start(1).await;
    let after = origin::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.yaml");
    let manifests = |moving: &Origins| {
        docs(&[
            INGRESS_CLASS.to_string(),
            backend("stable", stable.port, &stable.ips()),
            ingress("stable", Some("stable.example.com"), "/", "stable"),
            backend("moving", moving.port, &moving.ips()),
            ingress("moving", Some("moving.example.com"), "/", "moving"),
        ])
    };
    write_atomically(&routes, &manifests(&before));
    let vane = Vane::start(dir.path()).await;

    // A client keeps sending to both routes for the whole test.
    let stop = CancellationToken::new();
    let load = tokio::spawn({
        let stop = stop.clone();
        let addr = vane.http;
        async move {
            let client = client();
            let (mut sent, mut failures) = (0, Vec::new());
            while !stop.is_cancelled() {
                for host in ["stable.example.com", "moving.example.com"] {
                    let request = Request::get(format!("http://{addr}/"))
                        .header("host", host)
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    sent += 1;
                    match client.request(request).await {
                        Ok(response) if response.status() == StatusCode::OK => {
                            let _ = response.into_body().collect().await;
                        }
                        Ok(response) => failures.push(format!("{host}: {}", response.status())),
                        Err(error) => failures.push(format!("{host}: {error}")),
                    }
                }
            }
            (sent, failures)
        }
    });
    until_hits(&before.origins[0], 20).await;

    write_atomically(&routes, &manifests(&after));
    until_hits(&after.origins[0], 20).await;
    let moved_at = before.origins[0].hits();
    until_hits(&after.origins[0], 40).await;
    stop.cancel();
    let (sent, failures) = load.await.unwrap();

    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {failures:?}",
        failures.len()
    );
    assert_eq!(
        before.origins[0].hits(),
        moved_at,
        "the old backend got traffic after the move"
    );
    assert!(
        stable.origins.iter().all(|o| o.hits() >= 10),
        "stable route kept round-robining"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_manifests_are_reported_and_the_rest_keep_routing() {
    let origins = origin::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    write_atomically(
        &dir.path().join("good.yaml"),
        &single_route(&origins, Some("good.example.com")),
    );
    // A broken document, then a valid Ingress in the same file, then one with a missing Service.
    write_atomically(
        &dir.path().join("broken.yaml"),
        &docs(&[
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: [unclosed\n"
                .to_string(),
            ingress("after-broken", Some("after.example.com"), "/", "app"),
            ingress(
                "dangling",
                Some("dangling.example.com"),
                "/",
                "no-such-service",
            ),
        ]),
    );
    let mut vane = Vane::start(dir.path()).await;
    let client = client();
    assert_eq!(
        status_of(&client, vane.http, "good.example.com", "/").await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(&client, vane.http, "after.example.com", "/").await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(&client, vane.http, "dangling.example.com", "/").await,
        StatusCode::SERVICE_UNAVAILABLE
    );

    assert_eq!(
        status_of(&client, vane.admin, "admin", "/healthz").await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(&client, vane.admin, "admin", "/readyz").await,
        StatusCode::OK
    );
    let routes = get(&client, vane.debug, "debug", "/debug/routes")
        .await
        .json();
    let diagnostics = routes["diagnostics"].as_array().unwrap();
    assert!(
        diagnostics
            .iter()
            .any(|d| d["object"]["name"] == "dangling" && d["reason"] == "ServiceNotFound"),
        "{diagnostics:?}"
    );
    let generation = routes["generation"].as_u64().unwrap();

    // Now garbage arrives: a file that is not UTF-8, and one that is not Kubernetes at all.
    std::fs::write(dir.path().join("binary.yaml"), [0xff, 0xfe, 0x00, 0x9f]).unwrap();
    std::fs::write(
        dir.path().join("not-k8s.yml"),
        "just: [a, list]\n---\n- 1\n- 2\n",
    )
    .unwrap();
    let skipped = vane
        .wait_for_log("binary.yaml", Duration::from_secs(10))
        .await;
    assert!(
        skipped["fields"]["message"]
            .as_str()
            .unwrap()
            .starts_with("manifest skipped"),
        "{skipped}"
    );
    vane.wait_for_log("routing table published", Duration::from_secs(10))
        .await;

    assert!(vane.is_running());
    assert_eq!(
        status_of(&client, vane.http, "good.example.com", "/").await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(&client, vane.http, "after.example.com", "/").await,
        StatusCode::OK
    );
    let routes = get(&client, vane.debug, "debug", "/debug/routes")
        .await
        .json();
    assert!(routes["generation"].as_u64().unwrap() > generation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_streams_through_both_ways_in_bounded_memory() {
    const SIZE: u64 = 100 * MIB;
    let origins = origin::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    write_atomically(&dir.path().join("app.yaml"), &single_route(&origins, None));
    let vane = Vane::start(dir.path()).await;
    let client: Client<HttpConnector, BoxBody<Bytes, Infallible>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());

    let download = Request::get(format!("http://{}/bytes/{SIZE}", vane.http))
        .body(Full::new(Bytes::new()).boxed())
        .unwrap();
    let mut body = client.request(download).await.unwrap().into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        received += frame.unwrap().data_ref().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(received, SIZE);

    let upload = Request::post(format!("http://{}/upload", vane.http))
        .body(generated_body(SIZE))
        .unwrap();
    let response = client.request(upload).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let counted = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(counted, SIZE.to_string());

    // Each direction moved 100 MiB; vane's peak memory stays far below one copy of that.
    let peak = vane.peak_rss();
    assert!(peak < 64 * MIB, "vane peaked at {} MiB", peak / MIB);
}

#[tokio::test]
async fn missing_manifests_directory_stops_vane_with_a_clear_error() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_vane"))
        .args([
            "--manifests",
            "/nonexistent/vane-manifests",
            "--http-addr",
            "127.0.0.1:0",
            "--https-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--debug-addr",
            "127.0.0.1:0",
        ])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("--manifests /nonexistent/vane-manifests"),
        "{stdout}"
    );
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbolic_link_loops_are_reported_and_the_rest_routes() {
    use std::os::unix::fs::symlink;
    let origins = origin::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("nested");
    std::fs::create_dir(&nested).unwrap();
    write_atomically(&nested.join("app.yaml"), &single_route(&origins, None));
    // Two loops, which made the walk run forever: nested/up -> the root, nested/self -> nested.
    symlink(dir.path(), nested.join("up")).unwrap();
    symlink(&nested, nested.join("self")).unwrap();
    // Vane::start fails the test if vane is not serving within 30 s.
    let vane = Vane::start(dir.path()).await;
    let skipped: Vec<_> = vane
        .startup
        .iter()
        .filter(|m| m.contains("already read"))
        .collect();
    assert_eq!(skipped.len(), 2, "{:?}", vane.startup);
    for message in skipped {
        assert!(message.starts_with("manifest skipped: "), "{message}");
    }
    assert_eq!(
        status_of(&client(), vane.http, "any.example.com", "/").await,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_one_of_many_files_reaches_traffic_and_old_errors_stay_quiet() {
    const FILES: usize = 200;
    let origins = origin::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    write_atomically(&dir.path().join("class.yaml"), INGRESS_CLASS);
    for i in 0..FILES {
        write_atomically(
            &dir.path().join(format!("app{i:03}.yaml")),
            &docs(&[
                backend(&format!("svc{i}"), origins.port, &origins.ips()),
                ingress(
                    &format!("ing{i}"),
                    Some(&format!("h{i}.example.com")),
                    "/",
                    &format!("svc{i}"),
                ),
            ]),
        );
    }
    write_atomically(&dir.path().join("broken.yaml"), "kind: [unclosed\n");
    let mut vane = Vane::start(dir.path()).await;
    let client = client();
    assert!(
        vane.startup.iter().any(|m| m.contains("broken.yaml")),
        "{:?}",
        vane.startup
    );
    let host_routes = |host: String| {
        let client = client.clone();
        let http = vane.http;
        move || {
            let (client, host) = (client.clone(), host.clone());
            async move { status_of(&client, http, &host, "/").await == StatusCode::OK }
        }
    };

    // One file changes host, one is removed, one is added.
    write_atomically(
        &dir.path().join("app007.yaml"),
        &docs(&[
            backend("svc7", origins.port, &origins.ips()),
            ingress("ing7", Some("moved.example.com"), "/", "svc7"),
        ]),
    );
    std::fs::remove_file(dir.path().join("app008.yaml")).unwrap();
    write_atomically(
        &dir.path().join("added.yaml"),
        &docs(&[
            backend("added", origins.port, &origins.ips()),
            ingress("added", Some("added.example.com"), "/", "added"),
        ]),
    );
    eventually(
        "the moved host routes",
        host_routes("moved.example.com".into()),
    )
    .await;
    eventually(
        "the added host routes",
        host_routes("added.example.com".into()),
    )
    .await;
    eventually("the removed host is gone", || {
        let client = client.clone();
        let http = vane.http;
        async move { status_of(&client, http, "h8.example.com", "/").await == StatusCode::NOT_FOUND }
    })
    .await;
    assert_eq!(
        status_of(&client, vane.http, "h7.example.com", "/").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status_of(&client, vane.http, "h199.example.com", "/").await,
        StatusCode::OK
    );

    // The broken file did not change: none of the reloads logged it again.
    let generation = get(&client, vane.debug, "debug", "/debug/routes")
        .await
        .json()["generation"]
        .as_u64()
        .unwrap();
    let mut logged = Vec::new();
    loop {
        let (before, published) = vane
            .messages_until("routing table published", Duration::from_secs(10))
            .await;
        logged.extend(before);
        if published["fields"]["generation"].as_u64() >= Some(generation) {
            break;
        }
    }
    assert!(
        !logged.iter().any(|m| m.contains("broken.yaml")),
        "{logged:?}"
    );
}

/// A ConfigMap mounted as the manifests directory, updated the way kubelet updates it: the
/// visible file is a link into `..data`, and an update renames a new `..data` link over the old
/// one, so no event ever names the visible file.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mounted_configmap_update_reaches_traffic() {
    use std::os::unix::fs::symlink;
    let origins = origin::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let version = |name: &str, host: &str| {
        let data = dir.path().join(name);
        std::fs::create_dir(&data).unwrap();
        std::fs::write(
            data.join("routes.yaml"),
            docs(&[
                INGRESS_CLASS.to_string(),
                backend("app", origins.port, &origins.ips()),
                ingress("app", Some(host), "/", "app"),
            ]),
        )
        .unwrap();
    };
    version("..2026_12_03_01", "old.example.com");
    symlink("..2026_12_03_01", dir.path().join("..data")).unwrap();
    symlink("..data/routes.yaml", dir.path().join("routes.yaml")).unwrap();
    let vane = Vane::start(dir.path()).await;
    let client = client();
    assert_eq!(
        status_of(&client, vane.http, "old.example.com", "/").await,
        StatusCode::OK
    );

    version("..2026_12_03_02", "new.example.com");
    symlink("..2026_12_03_02", dir.path().join("..data_tmp")).unwrap();
    // The swap alone must be enough: kubelet removes the old directory only afterwards.
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    eventually("the updated ConfigMap is served", || async {
        status_of(&client, vane.http, "new.example.com", "/").await == StatusCode::OK
    })
    .await;
    assert_eq!(
        status_of(&client, vane.http, "old.example.com", "/").await,
        StatusCode::NOT_FOUND
    );
}

/// The Ingress of ingress-nginx's rewrite example (docs/examples/rewrite/README.md), as it is
/// written there, served by the binary from a manifests directory.
#[tokio::test]
async fn ingress_nginx_rewrite_example_serves_as_documented() {
    let origins = origin::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let example = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  annotations:
    nginx.ingress.kubernetes.io/use-regex: "true"
    nginx.ingress.kubernetes.io/rewrite-target: /$2
  name: rewrite
  namespace: default
spec:
  ingressClassName: vane
  rules:
  - host: rewrite.bar.com
    http:
      paths:
      - path: /something(/|$)(.*)
        pathType: ImplementationSpecific
        backend:
          service:
            name: http-svc
            port: 
              number: 80
"#;
    write_atomically(
        &dir.path().join("example.yaml"),
        &docs(&[
            INGRESS_CLASS.to_string(),
            backend("http-svc", origins.port, &origins.ips()),
            example.trim_start().to_string(),
        ]),
    );
    let vane = Vane::start(dir.path()).await;
    let client = client();
    // The example's three documented requests.
    for (path, upstream) in [
        ("/something", "/"),
        ("/something/", "/"),
        ("/something/new", "/new"),
    ] {
        let reply = get(&client, vane.http, "rewrite.bar.com", path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.json()["path"], upstream, "{path}");
    }
}
