//! The local stack cannot lose a port race and leaves no zombie: it starts while ports it chose
//! are taken from under it (the gateway's plain-HTTP port, which the issuer and Keycloak's
//! hostname carry, and oauth2-proxy's) and while short outbound connections churn through the
//! ephemeral range; it still signs a user in; a component that dies is reaped and reported.

mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meshauth::browser::Browser;
use meshauth::components::{self, CacheDir};
use meshauth::env::{LocalStack, StackConfig, StackEvent};
use meshauth::redact::Redactor;

/// Children of this process in state Z (exited, not reaped).
fn zombie_children() -> Vec<String> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter(|stat| {
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            fields.first() == Some(&"Z") && fields.get(1) == Some(&me.to_string().as_str())
        })
        .collect()
}

/// Opens and closes loopback connections as fast as it can until told to stop, so every
/// ephemeral port the kernel has is in play while the stack starts.
fn churn_ephemeral_ports(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("churn listener");
        listener.set_nonblocking(true).expect("non-blocking");
        let address = listener.local_addr().expect("address");
        let mut connections = 0;
        while !stop.load(Ordering::Relaxed) {
            if TcpStream::connect(address).is_ok() {
                connections += 1;
            }
            while listener.accept().is_ok() {}
        }
        connections
    })
}

#[test]
fn the_stack_survives_taken_ports_and_reaps_what_dies() {
    let runtime = common::runtime();
    let cache = CacheDir::from_env().expect("cache dir");
    let toolchain = components::ensure_installed(&cache, &|_| {}).expect("components");
    let redactor = Redactor::new();
    let dir = common::run_dir("reliability");

    // Takes the gateway's plain-HTTP port just before Envoy binds it, and oauth2-proxy's port
    // just before it binds, the first time each starts.
    let squatters: Mutex<Vec<TcpListener>> = Mutex::new(Vec::new());
    let taken: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let retries: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let progress = |event: StackEvent| match event {
        StackEvent::Binding { component, ports } => {
            let victim = match component {
                "envoy" => ports.get(1).copied(),
                "oauth2-proxy" => ports.first().copied(),
                _ => None,
            };
            if let Some(port) = victim
                && taken.lock().unwrap().insert(component)
            {
                let squatter = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
                    .expect("take the port the component is about to bind");
                squatters.lock().unwrap().push(squatter);
            }
        }
        StackEvent::Retrying { component, detail } => {
            eprintln!("[reliability] {component}: {detail}");
            retries.lock().unwrap().push(component.to_string());
        }
        StackEvent::Ready { component, after } => {
            eprintln!(
                "[reliability] {component} ready after {:.1}s",
                after.as_secs_f64()
            )
        }
        _ => {}
    };

    let stop_churn = Arc::new(AtomicBool::new(false));
    let churn = churn_ephemeral_ports(stop_churn.clone());
    let started = Instant::now();
    let stack = runtime.block_on(LocalStack::start(
        toolchain,
        &dir,
        StackConfig::default(),
        &redactor,
        &progress,
    ));
    stop_churn.store(true, Ordering::Relaxed);
    let connections = churn.join().expect("churn thread");
    let mut stack = stack.unwrap_or_else(|e| panic!("the stack did not start: {e}"));
    eprintln!(
        "[reliability] stack up in {:.1}s with {connections} churned connections",
        started.elapsed().as_secs_f64()
    );

    assert_eq!(
        *retries.lock().unwrap(),
        ["envoy", "oauth2-proxy"],
        "each taken port is met once and moved once"
    );
    let stack_log = std::fs::read_to_string(dir.join("stack.log")).expect("stack.log");
    assert!(
        stack_log.contains("envoy: address already in use")
            && stack_log.contains("oauth2-proxy: address already in use"),
        "the run log says what was retried:\n{stack_log}"
    );
    for squatter in squatters.lock().unwrap().iter() {
        let port = squatter.local_addr().unwrap().port();
        assert!(
            !stack.endpoints().app.as_str().contains(&port.to_string())
                && !stack.endpoints().issuer.contains(&port.to_string()),
            "the endpoints moved off the taken port {port}"
        );
    }

    // The moved ports are consistent everywhere: a real sign-in works end to end.
    let endpoints = stack.endpoints().clone();
    let page = runtime
        .block_on(async {
            let mut browser = Browser::new(endpoints.ca_pem.as_deref(), redactor.clone())
                .map_err(|e| e.to_string())?;
            browser
                .open_and_sign_in(
                    endpoints.app.join("headers").unwrap(),
                    &endpoints.user.username,
                    endpoints.user.password.expose(),
                )
                .await
                .map_err(|e| e.to_string())
        })
        .expect("sign-in after the port moves");
    assert_eq!(page.status, 200, "signed in to the app: {}", page.url);
    assert!(
        page.body.contains("\"Authorization\""),
        "the app got the token"
    );

    // A component that dies is reaped at once and named.
    let before = common::descendants(std::process::id());
    let httpbin = stack.ports().httpbin;
    let pid = before
        .iter()
        .copied()
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.contains("go-httpbin") && c.contains(&httpbin.to_string()))
        })
        .expect("httpbin's process");
    // SAFETY: signals a child process this test's stack started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(5);
    let death = loop {
        if let Some(death) = stack.died() {
            break death;
        }
        assert!(
            Instant::now() < deadline,
            "the death of httpbin was not noticed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let message = death.to_string();
    assert!(message.starts_with("httpbin died"), "{message}");
    assert!(
        zombie_children().is_empty(),
        "reaped: {:?}",
        zombie_children()
    );

    stack.stop();
    drop(stack);
    assert!(
        zombie_children().is_empty(),
        "no zombie after stop: {:?}",
        zombie_children()
    );
    let left: Vec<u32> = common::descendants(std::process::id())
        .into_iter()
        .collect();
    assert!(left.is_empty(), "no process of the stack left: {left:?}");
}
