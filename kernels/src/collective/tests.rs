//! The shim in-process: threads as ranks, a private redis-server on a free port.
use super::*;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Redis {
    child: Child,
    port: u16,
    /// The current group's generation on this server (each test has its own server, so cargo's parallel
    /// tests never move another test's generation between its ranks' `opts`).
    generation: AtomicU64,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis(password: Option<&str>) -> Redis {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    if let Some(p) = password {
        cmd.args(["--requirepass", p]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server on PATH");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Redis {
        child,
        port,
        generation: AtomicU64::new(0),
    }
}

fn opts(r: &Redis, rank: usize, size: usize, timeout_ms: u64) -> ConnectOptions {
    ConnectOptions {
        redis_host: "127.0.0.1".into(),
        redis_port: r.port,
        redis_user: String::new(),
        redis_password: String::new(),
        redis_db: 0,
        prefix: format!("test:g{}", r.generation.load(Ordering::SeqCst)),
        rank,
        world_size: size,
        timeout_ms,
        hostname: "127.0.0.1".into(),
    }
}

/// Runs `f` on `size` threads, each a connected rank.
fn group<T: Send + 'static>(
    r: &Redis,
    size: usize,
    f: impl Fn(&mut Collective) -> T + Send + Sync + 'static,
) -> Vec<T> {
    r.generation.fetch_add(1, Ordering::SeqCst);
    let f = std::sync::Arc::new(f);
    let hs: Vec<_> = (0..size)
        .map(|rank| {
            let (o, f) = (opts(r, rank, size, 20_000), f.clone());
            std::thread::spawn(move || {
                let mut c = Collective::connect(&o).expect("connect");
                f(&mut c)
            })
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn allreduce_broadcast_reduce_scatter_allgather_2_and_3_ranks() {
    let r = redis(None);
    for size in [2usize, 3] {
        let out = group(&r, size, move |c| {
            let rank = c.rank();
            let mut x: Vec<f32> = (0..1001).map(|i| (i * (rank + 1)) as f32).collect();
            c.allreduce_f32(&mut x).unwrap();
            let mut y = vec![rank as f64 + 0.5; 7];
            c.allreduce_f64(&mut y).unwrap();
            let b = c
                .broadcast_bytes(
                    if rank == size - 1 {
                        Some(b"hello ranks".to_vec())
                    } else {
                        None
                    },
                    size - 1,
                )
                .unwrap();
            let mut g: Vec<f32> = (0..1001).map(|i| (i + rank) as f32).collect();
            let n = c.reduce_scatter_f32(&mut g).unwrap();
            let shard = g[..n].to_vec();
            let mut all = vec![0f32; 1001];
            c.allgather_f32(&shard, &mut all).unwrap();
            c.barrier().unwrap();
            (x, y, b, shard, all)
        });
        let tri = (size * (size + 1) / 2) as f32;
        let ranges = shard_ranges(1001, size);
        for (rank, (x, y, b, shard, all)) in out.into_iter().enumerate() {
            assert!(
                x.iter().enumerate().all(|(i, &v)| v == i as f32 * tri),
                "allreduce f32, size {size}"
            );
            let ys: f64 = (0..size).map(|r| r as f64 + 0.5).sum();
            assert!(y.iter().all(|&v| v == ys));
            assert_eq!(b, b"hello ranks");
            // Σ_r (i + r) = size·i + Σr
            let sum_r = (size * (size - 1) / 2) as f32;
            let want: Vec<f32> = ranges[rank]
                .clone()
                .map(|i| size as f32 * i as f32 + sum_r)
                .collect();
            assert_eq!(
                shard, want,
                "reduce-scatter shard of rank {rank}, size {size}"
            );
            let want_all: Vec<f32> = (0..1001).map(|i| size as f32 * i as f32 + sum_r).collect();
            assert_eq!(all, want_all);
        }
    }
}

#[test]
fn rendezvous_timeout_names_missing_ranks() {
    let r = redis(None);
    r.generation.fetch_add(1, Ordering::SeqCst);
    let o = opts(&r, 0, 3, 600);
    let start = Instant::now();
    let e = Collective::connect(&o).err().expect("must time out");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(e.code, ErrorCode::CollectiveTimeout, "{e}");
    assert!(e.message.contains("ranks 1, 2 did not join"), "{e}");
}

#[test]
fn redis_auth_and_bad_store() {
    let r = redis(Some("s3cret"));
    r.generation.fetch_add(1, Ordering::SeqCst);
    let mut o = opts(&r, 0, 1, 2000);
    let e = Collective::connect(&o).err().expect("no password");
    assert_eq!(e.code, ErrorCode::CollectiveStore, "{e}");
    o.redis_password = "s3cret".into();
    o.redis_db = 2;
    let mut c = Collective::connect(&o).expect("with AUTH");
    let mut x = vec![1.0f32, 2.0];
    c.allreduce_f32(&mut x).unwrap();
    assert_eq!(x, [1.0, 2.0]);
    o.redis_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = Collective::connect(&o).err().expect("nothing listens");
    assert_eq!(e.code, ErrorCode::CollectiveStore, "{e}");
}

#[test]
fn peer_gone_mid_collective_fails_within_timeout() {
    let r = redis(None);
    r.generation.fetch_add(1, Ordering::SeqCst);
    let o1 = opts(&r, 1, 2, 3000);
    let peer = std::thread::spawn(move || {
        let mut c = Collective::connect(&o1).unwrap();
        c.barrier().unwrap();
        drop(c); // leaves before the next collective: its sockets close
    });
    let mut c = Collective::connect(&opts(&r, 0, 2, 3000)).unwrap();
    c.barrier().unwrap();
    peer.join().unwrap();
    let start = Instant::now();
    let mut x = vec![1.0f32; 1 << 16];
    let e = c.allreduce_f32(&mut x).err().expect("peer is gone");
    assert!(
        start.elapsed() < Duration::from_millis(4000),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        matches!(
            e.code,
            ErrorCode::CollectivePeerLost | ErrorCode::CollectiveTimeout
        ),
        "{e}"
    );
}

/// ZeRO-1 on 2 and 3 ranks equals all-reduce + the unsharded step, over 3 steps with clipping active; the
/// gathered optimizer state equals the unsharded one.
#[test]
fn sharded_step_matches_unsharded() {
    use crate::model::{AdamWParams, Model, ModelConfig};
    let r = redis(None);
    let cfg = ModelConfig::preset("tiny").unwrap();
    let opt = AdamWParams {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
        max_grad_norm: 0.05,
    };
    let grads = |rank: usize, step: usize, n: usize| -> Vec<f32> {
        (0..n)
            .map(|i| {
                (((i * 7919 + rank * 104729 + step * 1299709) % 2003) as f32 / 2003.0 - 0.5) * 1e-3
            })
            .collect()
    };
    for size in [2usize, 3] {
        let c2 = cfg.clone();
        let out = group(&r, size, move |c| {
            let mut m = Model::new(c2.clone(), 5).unwrap();
            let n = m.num_params();
            let mut norms = vec![];
            for step in 0..3 {
                m.set_grads(&grads(c.rank(), step, n)).unwrap();
                norms.push(m.sharded_step(c, &opt).unwrap());
            }
            assert!(m.grads().unwrap().iter().all(|&g| g == 0.0));
            assert!(
                m.optimizer_state().is_err(),
                "sharded state is not readable as a whole"
            );
            m.gather_optimizer_state(c).unwrap();
            let (mm, vv, st) = m
                .optimizer_state()
                .map(|(a, b, s)| (a.to_vec(), b.to_vec(), s))
                .unwrap();
            (m.params().to_vec(), norms, mm, vv, st)
        });
        let mut reference = Model::new(cfg.clone(), 5).unwrap();
        let n = reference.num_params();
        let mut norms = vec![];
        for step in 0..3 {
            let mut sum = vec![0f32; n];
            for rank in 0..size {
                for (s, g) in sum.iter_mut().zip(grads(rank, step, n)) {
                    *s += g;
                }
            }
            reference.set_grads(&sum).unwrap();
            norms.push(reference.clip_and_step(&opt).unwrap());
        }
        assert!(
            norms[0] > opt.max_grad_norm,
            "clipping must be active: {norms:?}"
        );
        let (rm, rv, rs) = reference
            .optimizer_state()
            .map(|(a, b, s)| (a.to_vec(), b.to_vec(), s))
            .unwrap();
        let close = |a: &[f32], b: &[f32], what: &str| {
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| ((x - y).abs() / y.abs().max(1e-6)) as f64)
                .fold(0.0, f64::max);
            assert!(
                worst <= 1e-5,
                "{what}: worst relative difference {worst} (size {size})"
            );
        };
        for (params, ns, mm, vv, st) in &out {
            close(params, reference.params(), "params");
            close(ns, &norms, "norms");
            close(mm, &rm, "m");
            close(vv, &rv, "v");
            assert_eq!(*st, rs);
            assert_eq!(params, &out[0].0, "every rank holds the same parameters");
        }
    }
}

/// A checkpoint taken on 2 ranks (gathered optimizer state) restores onto 3 ranks: the next sharded step
/// there equals the unsharded step from the same state.
#[test]
fn gathered_state_restores_onto_another_rank_count() {
    use crate::model::{AdamWParams, Model, ModelConfig};
    let r = redis(None);
    let cfg = ModelConfig::preset("tiny").unwrap();
    let opt = AdamWParams {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
        max_grad_norm: 0.05,
    };
    let grads = |rank: usize, step: usize, n: usize| -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 31 + rank * 7 + step * 13) % 101) as f32 / 101.0 - 0.5) * 1e-3)
            .collect()
    };
    let c2 = cfg.clone();
    let saved = group(&r, 2, move |c| {
        let mut m = Model::new(c2.clone(), 9).unwrap();
        let n = m.num_params();
        for step in 0..2 {
            m.set_grads(&grads(c.rank(), step, n)).unwrap();
            m.sharded_step(c, &opt).unwrap();
        }
        m.gather_optimizer_state(c).unwrap();
        let (mm, vv, st) = m
            .optimizer_state()
            .map(|(a, b, s)| (a.to_vec(), b.to_vec(), s))
            .unwrap();
        (m.params().to_vec(), mm, vv, st)
    });
    let (p, mm, vv, st) = saved.into_iter().next().unwrap();
    let (c3, p3, m3, v3) = (cfg.clone(), p.clone(), mm.clone(), vv.clone());
    let out = group(&r, 3, move |c| {
        let mut m = Model::from_params(c3.clone(), p3.clone()).unwrap();
        m.set_optimizer_state(&m3, &v3, st).unwrap();
        let n = m.num_params();
        m.set_grads(&grads(c.rank(), 7, n)).unwrap();
        m.sharded_step(c, &opt).unwrap();
        m.params().to_vec()
    });
    let mut reference = Model::from_params(cfg, p).unwrap();
    reference.set_optimizer_state(&mm, &vv, st).unwrap();
    let n = reference.num_params();
    let mut sum = vec![0f32; n];
    for rank in 0..3 {
        for (s, g) in sum.iter_mut().zip(grads(rank, 7, n)) {
            *s += g;
        }
    }
    reference.set_grads(&sum).unwrap();
    reference.clip_and_step(&opt).unwrap();
    for params in &out {
        let worst = params
            .iter()
            .zip(reference.params())
            .map(|(a, b)| ((a - b).abs() / b.abs().max(1e-6)) as f64)
            .fold(0.0, f64::max);
        assert!(worst <= 1e-5, "worst relative difference {worst}");
    }
}

/// A sharded step whose collective fails leaves parameters, moments and step count unchanged.
#[test]
fn failed_sharded_step_changes_nothing() {
    use crate::model::{AdamWParams, Model, ModelConfig};
    let r = redis(None);
    r.generation.fetch_add(1, Ordering::SeqCst);
    let cfg = ModelConfig::preset("tiny").unwrap();
    let opt = AdamWParams {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.0,
        max_grad_norm: 1.0,
    };
    let o1 = opts(&r, 1, 2, 2000);
    let c1 = cfg.clone();
    let peer = std::thread::spawn(move || {
        let mut c = Collective::connect(&o1).unwrap();
        let mut m = Model::new(c1, 4).unwrap();
        m.set_grads(&vec![1e-3; m.num_params()]).unwrap();
        m.sharded_step(&mut c, &opt).unwrap();
        // leaves before the second step
    });
    let mut c = Collective::connect(&opts(&r, 0, 2, 2000)).unwrap();
    let mut m = Model::new(cfg, 4).unwrap();
    let n = m.num_params();
    m.set_grads(&vec![1e-3; n]).unwrap();
    m.sharded_step(&mut c, &opt).unwrap();
    peer.join().unwrap();
    let before = (
        m.params().to_vec(),
        m.optimizer_shard()
            .map(|s| (s.offset, s.m, s.v, s.step))
            .ok()
            .unwrap(),
    );
    m.set_grads(&vec![2e-3; n]).unwrap();
    let e = m
        .sharded_step(&mut c, &opt)
        .err()
        .expect("the peer is gone");
    assert!(
        matches!(
            e.code,
            ErrorCode::CollectivePeerLost | ErrorCode::CollectiveTimeout
        ),
        "{e}"
    );
    let after = (
        m.params().to_vec(),
        m.optimizer_shard()
            .map(|s| (s.offset, s.m, s.v, s.step))
            .ok()
            .unwrap(),
    );
    assert!(
        before == after,
        "a failed sharded step changed the parameters or the optimizer state"
    );
    assert_eq!(after.1 .3, 1);
}
