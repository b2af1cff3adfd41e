//! Writes the seed corpus (`fuzz/corpus/TARGET/*`): valid inputs of each
//! kind, which the fuzzer mutates. `cargo run --bin seeds` (plain build, no
//! instrumentation) from `fuzz/`.

use std::sync::atomic::Ordering::Relaxed;

use conduit::memory::ring_core;
use conduit::rpc::{Answer, Call, Carried, Outcome};
use conduit::wire;
use conduit_broker::protocol::{PROTOCOL, Request};
use conduit_fuzz::WordRing;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = format!("corpus/{target}");
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(format!("{dir}/{name}"), bytes).expect("seed");
}

fn call(id: u64, method: &str, args: Vec<u8>) -> Call {
    Call {
        client: 0,
        id,
        done_below: id,
        method: method.into(),
        budget_us: Some(1000),
        args,
        rights: Carried::default(),
    }
}

fn main() {
    // frame: data frames, a credit, a wake frame, a fragment.
    let f = |v: &dyn erased::Enc| v.frame();
    write("frame", "u64", &f(&7u64));
    write("frame", "tuple", &f(&(7u64, "seven".to_string(), vec![1u64, 2, 3])));
    write("frame", "strings", &f(&vec!["a".to_string(), "bc".to_string()]));
    write("frame", "credit", &wire::credit_frame(3));
    write("frame", "wake", wire::wake_frame());
    let mut frag = Vec::new();
    wire::fragment(&f(&vec![0u8; 300]), 1, 2, 128, &mut frag);
    write("frame", "fragment", &frag);

    // rpc_envelope: a call, a batch of calls, answers, a batch of answers.
    let add = call(300, "add", postcard::to_allocvec(&(2i64, 3i64)).unwrap());
    write("rpc_envelope", "call", &postcard::to_allocvec(&add).unwrap());
    let batch =
        call(0, conduit::rpc::BATCH, postcard::to_allocvec(&vec![add.clone(), call(301, "neg", vec![4])]).unwrap());
    write("rpc_envelope", "batch", &postcard::to_allocvec(&batch).unwrap());
    let ok = Answer { id: 300, outcome: Outcome::Returned(vec![5]), rights: Carried::default() };
    write("rpc_envelope", "answer", &postcard::to_allocvec(&ok).unwrap());
    let answers = vec![ok.clone(), Answer { id: 301, outcome: Outcome::Duplicate, rights: Carried::default() }];
    let both =
        Answer { id: 0, outcome: Outcome::Batch(postcard::to_allocvec(&answers).unwrap()), rights: Carried::default() };
    write("rpc_envelope", "answers", &postcard::to_allocvec(&both).unwrap());

    // broker_request: a few requests.
    write("broker_request", "hello", &postcard::to_allocvec(&Request::Hello { protocol: PROTOCOL }).unwrap());
    write("broker_request", "lookup", &postcard::to_allocvec(&Request::Lookup { name: "calc".into() }).unwrap());
    write("broker_request", "list", &postcard::to_allocvec(&Request::List).unwrap());
    write("broker_request", "traffic", &postcard::to_allocvec(&Request::Traffic).unwrap());

    // durable_log: the generation (a byte), then a log of it with one op
    // of each kind; and the same log read as a stale generation.
    let log = conduit_broker::fuzzing::sample_durable_log();
    write("durable_log", "four_ops", &[&[1u8][..], &log].concat());
    write("durable_log", "stale", &[&[2u8][..], &log].concat());

    // bridge_call: a call of two sends; answers; an export list (the
    // encodings pinned by crates/conduit-zenoh/src/wire.rs's tests).
    let call = [1u8, b'b', 7, 3, 1, 0xe8, 7, 100, 42, 0, 4, b'j', b'o', b'b', b's', 2, 2, b'h', b'i', 2];
    write("bridge_call", "one_send", &call);
    // Answers::All([Sent { receiver: None }, Refused(Full)]).
    write("bridge_call", "answers", &[0u8, 2, 0, 0, 3, 3]);
    // Exports { host: "a", mailboxes: [jobs, capacity Some(3)], services: [calc] }.
    write("bridge_call", "exports", &[1u8, b'a', 1, 4, b'j', b'o', b'b', b's', 1, 3, 1, 4, b'c', b'a', b'l', b'c']);
    // RpcFrame::Call { origin "b", session 1, call: client 0, id 2, done_below 2, "add", no budget, args [2, 4] }.
    write("bridge_call", "rpc_call", &[0u8, 1, b'b', 1, 0, 2, 2, 3, b'a', b'd', b'd', 0, 2, 2, 4]);
    // RpcOpen { origin "b", session 1, name "calc" }.
    write("bridge_call", "rpc_open", &[1u8, b'b', 1, 4, b'c', b'a', b'l', b'c']);

    // rights_table: flags, rights, descriptors, payload (see the target):
    // a plain message; a send right (two descriptors: socket, control
    // block) as the first field; a segment (one memfd).
    let plain = postcard::to_allocvec(&(7u64, 0u8, 0u8, 0u8, b"x".to_vec())).unwrap();
    write("rights_table", "plain", &[&[0u8, 0, 0][..], &plain].concat());
    write("rights_table", "send_right", &[0u8, 1, 1, 2, 3, 1, 7, 1, 0, 0, 0, 0]);
    write("rights_table", "segment", &[0u8, 1, 5, 1, 1, 7, 0, 0, 1, 0, 0]);
    write("rights_table", "out_of_line", &[1u8, 0, 1, 1, 7, 0, 0, 0, 0]);

    // ring_records: a 64-byte ring (shape 0) holding two records, and one
    // that wrapped (padding at the end).
    for (name, sizes) in [("two", &[5usize, 12][..]), ("wrapped", &[20, 20, 8][..])] {
        let ring = WordRing::new(8, |_| 0);
        for &len in sizes {
            match ring_core::try_reserve(&ring, len) {
                Ok(Some(r)) => ring_core::commit(&ring, r),
                _ => {
                    // Full: the consumer takes the oldest, then try again.
                    if let Ok(Some(old)) = ring_core::peek(&ring) {
                        ring_core::release(&ring, old);
                    }
                    if let Ok(Some(r)) = ring_core::try_reserve(&ring, len) {
                        ring_core::commit(&ring, r);
                    }
                }
            }
        }
        let mut bytes = vec![0u8];
        bytes.extend(ring.head.load(Relaxed).to_le_bytes());
        bytes.extend(ring.tail.load(Relaxed).to_le_bytes());
        for w in &ring.words {
            bytes.extend(w.load(Relaxed).to_le_bytes());
        }
        write("ring_records", name, &bytes);
    }

    // queue_records: shape (capacity, honest messages first), then 11-byte
    // operations: op, two argument bytes, an 8-byte word (see the target).
    let op = |code: u8, a: u8, b: u8, word: u64| [&[code, a, b][..], &word.to_le_bytes()].concat();
    let receive = [vec![4u8], op(1, 2, 0, 0), op(2, 0, 0, 0), op(1, 3, 0, 0), op(2, 1, 0, 0), op(0, 8, 1, 0)].concat();
    write("queue_records", "receive", &receive);
    // A peer writes a record's header word, the data area's first, then
    // the header page's first words, between receives.
    let forge =
        [vec![3u8], op(4, 0, 2, 0xffff_ffff), op(1, 2, 0, 0), op(5, 1, 0, 7), op(6, 2, 0, 1), op(1, 0, 0, 0)].concat();
    write("queue_records", "forge", &forge);

    // ctl_block: shape (the channel), then 10-byte operations: op, a word
    // index, an 8-byte value. Send, receive, forge the count, move the
    // sender, receive.
    let op = |code: u8, at: u8, value: u64| [&[code, at][..], &value.to_le_bytes()].concat();
    for (name, shape) in [("bounded", 2u8), ("rendezvous", 0), ("sysv", 5)] {
        let ops = [vec![shape], op(0, 0, 0), op(1, 0, 0), op(4, 8, 1), op(0, 0, 0), op(7, 0, 0), op(2, 0, 0)].concat();
        write("ctl_block", name, &ops);
    }
}

/// A value to put in a data frame, whatever its type.
mod erased {
    pub trait Enc {
        fn frame(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Enc for T {
        fn frame(&self) -> Vec<u8> {
            conduit::wire::encode_frame(self).expect("encode")
        }
    }
}
