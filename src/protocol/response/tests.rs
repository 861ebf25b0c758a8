//! Table tests for the response scanner on hand-built packet sequences (the
//! shapes MariaDB sends), plus properties: any split of the input gives the
//! same result, and arbitrary bytes never panic.

use super::*;
use crate::protocol::packet::{number_packets, put_lenenc, put_packet};
use proptest::prelude::*;

const AUTOCOMMIT: u16 = 0x0002;
const MORE: u16 = 0x0008;
const CURSOR: u16 = 0x0040;
const LAST_ROW: u16 = 0x0080;

/// Builds a response as a sequence of payloads numbered from sequence id 1.
struct Wire {
    bytes: Vec<u8>,
    seq: u8,
}

impl Wire {
    fn new() -> Self {
        Wire {
            bytes: Vec::new(),
            seq: 1,
        }
    }
    fn packet(mut self, payload: &[u8]) -> Self {
        self.seq = put_packet(&mut self.bytes, self.seq, payload);
        self
    }
    fn ok(self, status: u16) -> Self {
        self.packet(&ok_payload(0x00, status))
    }
    fn ok_fe(self, status: u16) -> Self {
        self.packet(&ok_payload(0xFE, status))
    }
    fn eof(self, status: u16) -> Self {
        let [s0, s1] = status.to_le_bytes();
        self.packet(&[0xFE, 0, 0, s0, s1])
    }
    fn err(self, code: u16) -> Self {
        let mut p = vec![0xFF];
        p.extend_from_slice(&code.to_le_bytes());
        p.extend_from_slice(b"#42000oops");
        self.packet(&p)
    }
    fn count(self, n: u64) -> Self {
        let mut p = Vec::new();
        put_lenenc(&mut p, n);
        self.packet(&p)
    }
    fn column(self, name: &str) -> Self {
        let mut p = Vec::new();
        for part in ["def", "db", "t", "t", name, name] {
            put_lenenc(&mut p, part.len() as u64);
            p.extend_from_slice(part.as_bytes());
        }
        p.extend_from_slice(&[0x0c, 0x21, 0, 0, 1, 0, 0, 0xfd, 0, 0, 0, 0, 0]);
        self.packet(&p)
    }
    fn prepare_ok(self, id: u32, columns: u16, params: u16) -> Self {
        let mut p = vec![0x00];
        p.extend_from_slice(&id.to_le_bytes());
        p.extend_from_slice(&columns.to_le_bytes());
        p.extend_from_slice(&params.to_le_bytes());
        p.extend_from_slice(&[0, 0, 0]);
        self.packet(&p)
    }
    fn row(self, value: &str) -> Self {
        let mut p = Vec::new();
        put_lenenc(&mut p, value.len() as u64);
        p.extend_from_slice(value.as_bytes());
        self.packet(&p)
    }
    /// A result set: count, definitions, (EOF), rows, terminator.
    fn result_set(self, deprecate_eof: bool, rows: usize, end_status: u16) -> Self {
        let mut w = self.count(2).column("a").column("b");
        if !deprecate_eof {
            w = w.eof(AUTOCOMMIT);
        }
        for i in 0..rows {
            w = w.row(&format!("row {i}"));
        }
        if deprecate_eof {
            w.ok_fe(end_status)
        } else {
            w.eof(end_status)
        }
    }
}

fn ok_payload(header: u8, status: u16) -> Vec<u8> {
    let mut p = vec![header, 1, 0];
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&[0, 0]);
    p
}

/// Scans `bytes` in one piece; returns the final scan, status and error.
fn scan_all(expect: Expect, deprecate_eof: bool, bytes: &[u8]) -> (Progress, ResponseScanner) {
    let mut scanner = ResponseScanner::new(expect, deprecate_eof);
    let progress = scanner.scan(bytes).unwrap();
    (progress, scanner)
}

fn assert_done(expect: Expect, deprecate_eof: bool, wire: Wire) -> ResponseScanner {
    let (progress, scanner) = scan_all(expect, deprecate_eof, &wire.bytes);
    assert_eq!(
        progress,
        Progress {
            consumed: wire.bytes.len(),
            scan: Scan::Done
        }
    );
    assert_eq!(scanner.last_seq(), Some(wire.seq - 1));
    assert!(scanner.at_boundary());
    assert_eq!(
        split_scan(expect, deprecate_eof, &wire.bytes),
        (wire.bytes.len(), Scan::Done),
        "byte-by-byte feeding disagrees"
    );
    scanner
}

/// Feeds the input one byte more at a time, as reads that return little.
fn split_scan(expect: Expect, deprecate_eof: bool, bytes: &[u8]) -> (usize, Scan) {
    let mut scanner = ResponseScanner::new(expect, deprecate_eof);
    let mut consumed = 0;
    for end in 1..=bytes.len() {
        let progress = scanner.scan(&bytes[consumed..end]).unwrap();
        consumed += progress.consumed;
        if progress.scan != Scan::NeedMore {
            return (consumed, progress.scan);
        }
    }
    (consumed, Scan::NeedMore)
}

const RESULTS: Expect = Expect::Results { cursor: false };

#[test]
fn ok_and_err_end_the_response() {
    let s = assert_done(RESULTS, true, Wire::new().ok(AUTOCOMMIT));
    assert_eq!(s.status(), Some(StatusFlags::SERVER_STATUS_AUTOCOMMIT));
    assert_eq!(s.error(), None);
    let s = assert_done(RESULTS, true, Wire::new().err(1064));
    assert_eq!(s.error(), Some(1064));
}

#[test]
fn result_sets_with_and_without_deprecate_eof() {
    for deprecate_eof in [true, false] {
        for rows in [0, 1, 5] {
            let s = assert_done(
                RESULTS,
                deprecate_eof,
                Wire::new().result_set(deprecate_eof, rows, AUTOCOMMIT | 1),
            );
            assert_eq!(s.status().map(|f| f.bits()), Some(AUTOCOMMIT | 1));
        }
    }
}

#[test]
fn more_results_chain_until_the_last() {
    for deprecate_eof in [true, false] {
        let wire = Wire::new()
            .ok(MORE)
            .result_set(deprecate_eof, 2, MORE)
            .result_set(deprecate_eof, 0, MORE)
            .ok(AUTOCOMMIT);
        assert_done(RESULTS, deprecate_eof, wire);
    }
}

#[test]
fn an_error_ends_even_a_chain() {
    let wire = Wire::new()
        .ok(MORE)
        .count(2)
        .column("a")
        .column("b")
        .row("x")
        .err(1317);
    let s = assert_done(RESULTS, true, wire);
    assert_eq!(s.error(), Some(1317));
}

#[test]
fn local_infile_pauses_for_the_client_then_expects_ok() {
    let request = Wire::new().packet(b"\xFB/tmp/data.csv");
    let mut scanner = ResponseScanner::new(RESULTS, true);
    let progress = scanner.scan(&request.bytes).unwrap();
    assert_eq!(
        progress,
        Progress {
            consumed: request.bytes.len(),
            scan: Scan::LocalInfile
        }
    );
    // Client sent seq 2 (data) and 3 (empty); the server answers with seq 4.
    scanner.resume_after_local_infile(3);
    let mut answer = Vec::new();
    put_packet(&mut answer, 4, &ok_payload(0, AUTOCOMMIT));
    assert_eq!(
        scanner.scan(&answer).unwrap(),
        Progress {
            consumed: answer.len(),
            scan: Scan::Done
        }
    );
}

#[test]
fn rows_starting_with_0xfe_over_16_mib_are_rows() {
    // A text row whose first value is ≥ 2^24 bytes: lenenc 0xFE + 8 bytes.
    let mut row = vec![0xFE];
    row.extend_from_slice(&((MAX_CHUNK + 100) as u64).to_le_bytes());
    row.resize(MAX_CHUNK + 109, b'x');
    let wire = Wire::new()
        .count(1)
        .column("big")
        .packet(&row)
        .ok_fe(AUTOCOMMIT);
    assert_done(RESULTS, true, wire);
}

#[test]
fn a_requested_cursor_ends_the_response_after_the_metadata() {
    let wire = || {
        Wire::new()
            .count(2)
            .column("a")
            .column("b")
            .eof(AUTOCOMMIT | CURSOR)
    };
    assert_done(Expect::Results { cursor: true }, false, wire());
    // Without a cursor request the same flag does not end it (a stored
    // procedure may set it), so rows are still expected.
    let (progress, _) = scan_all(RESULTS, false, &wire().bytes);
    assert_eq!(progress.scan, Scan::NeedMore);
    // With DEPRECATE_EOF the server ends an opened cursor with a terminator.
    let wire = Wire::new()
        .count(2)
        .column("a")
        .column("b")
        .ok_fe(AUTOCOMMIT | CURSOR);
    assert_done(Expect::Results { cursor: true }, true, wire);
}

#[test]
fn fetch_rows_until_the_terminator() {
    let wire = Wire::new()
        .packet(&[0, 0, 1])
        .packet(&[0, 0, 2])
        .eof(CURSOR | LAST_ROW);
    let s = assert_done(Expect::Fetch, false, wire);
    assert!(
        s.status()
            .unwrap()
            .contains(StatusFlags::SERVER_STATUS_LAST_ROW_SENT)
    );
    assert_done(Expect::Fetch, true, Wire::new().err(1243));
}

#[test]
fn prepare_ok_is_located_and_its_definitions_counted() {
    for deprecate_eof in [true, false] {
        let mut wire = Wire::new().prepare_ok(77, 1, 2).column("?").column("?");
        if !deprecate_eof {
            wire = wire.eof(AUTOCOMMIT);
        }
        wire = wire.column("a");
        if !deprecate_eof {
            wire = wire.eof(AUTOCOMMIT);
        }
        let mut scanner = ResponseScanner::new(Expect::Prepare, deprecate_eof);
        let progress = scanner.scan(&wire.bytes).unwrap();
        assert_eq!(progress.scan, Scan::Done);
        assert_eq!(progress.consumed, wire.bytes.len());
        let ok = scanner.take_prepare_ok().unwrap();
        assert_eq!(scanner.take_prepare_ok(), None, "taken once");
        assert_eq!((ok.statement_id, ok.columns, ok.params), (77, 1, 2));
        assert_eq!(
            &wire.bytes[ok.id_offset..ok.id_offset + 4],
            &77u32.to_le_bytes()
        );
    }
    let mut p = vec![0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p[5] = 0;
    assert_done(Expect::Prepare, false, Wire::new().packet(&p));
    assert_done(Expect::Prepare, false, Wire::new().err(1064));
}

#[test]
fn field_list_and_single_packet_responses() {
    assert_done(
        Expect::FieldList,
        false,
        Wire::new().column("a").column("b").eof(AUTOCOMMIT),
    );
    assert_done(
        Expect::FieldList,
        true,
        Wire::new().column("a").ok_fe(AUTOCOMMIT),
    );
    assert_done(Expect::Single, true, Wire::new().ok(AUTOCOMMIT));
    assert_done(
        Expect::Single,
        true,
        Wire::new().packet(b"Uptime: 5  Threads: 1"),
    );
    assert_done(Expect::Single, false, Wire::new().eof(AUTOCOMMIT));
}

#[test]
fn rows_stream_before_they_are_complete() {
    let wire = Wire::new()
        .count(1)
        .column("a")
        .row(&"x".repeat(1000))
        .ok_fe(AUTOCOMMIT);
    let mut scanner = ResponseScanner::new(RESULTS, true);
    let cut = wire.bytes.len() - 500;
    let first = scanner.scan(&wire.bytes[..cut]).unwrap();
    assert_eq!(
        first,
        Progress {
            consumed: cut,
            scan: Scan::NeedMore
        }
    );
    assert!(!scanner.at_boundary());
    let rest = scanner.scan(&wire.bytes[cut..]).unwrap();
    assert_eq!(
        rest,
        Progress {
            consumed: 500,
            scan: Scan::Done
        }
    );
}

#[test]
fn status_packets_wait_to_be_whole() {
    let wire = Wire::new().ok(AUTOCOMMIT);
    let mut scanner = ResponseScanner::new(RESULTS, true);
    assert_eq!(
        scanner.scan(&wire.bytes[..6]).unwrap(),
        Progress {
            consumed: 0,
            scan: Scan::NeedMore
        }
    );
}

#[test]
fn garbage_is_an_error_not_a_hang() {
    let cases: &[(Expect, Wire)] = &[
        (RESULTS, Wire::new().count(0)),
        (RESULTS, Wire::new().packet(b"\xFC\x01")),
        (Expect::Prepare, Wire::new().packet(b"\x00\x01")),
        (RESULTS, Wire::new().count(1).column("a").packet(b"\x01")),
    ];
    for (expect, wire) in cases {
        let mut scanner = ResponseScanner::new(*expect, false);
        assert!(scanner.scan(&wire.bytes).is_err(), "{:?}", wire.bytes);
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), kind in 0u8..6, eof: bool) {
        let expect = match kind {
            0 => RESULTS,
            1 => Expect::Results { cursor: true },
            2 => Expect::Prepare,
            3 => Expect::Fetch,
            4 => Expect::FieldList,
            _ => Expect::Single,
        };
        let mut scanner = ResponseScanner::new(expect, eof);
        if let Ok(progress) = scanner.scan(&bytes) {
            prop_assert!(progress.consumed <= bytes.len());
        }
    }

    #[test]
    fn any_split_gives_the_same_answer(rows in 0usize..5, eof: bool, cut_seed in 0usize..1000) {
        let wire = Wire::new().ok(MORE).result_set(eof, rows, AUTOCOMMIT);
        let cut = cut_seed % (wire.bytes.len() + 1);
        let mut scanner = ResponseScanner::new(RESULTS, eof);
        let first = scanner.scan(&wire.bytes[..cut]).unwrap();
        let second = scanner.scan(&wire.bytes[first.consumed..]).unwrap();
        prop_assert_eq!(first.consumed + second.consumed, wire.bytes.len());
        prop_assert_eq!(second.scan, Scan::Done);
    }
}

/// A column count with MariaDB's "metadata follows" byte.
fn cached_count(wire: Wire, n: u64, follows: bool) -> Wire {
    let mut p = Vec::new();
    put_lenenc(&mut p, n);
    p.push(u8::from(follows));
    wire.packet(&p)
}

fn scan_cached(wire: &Wire, deprecate_eof: bool) -> ResponseScanner {
    let mut scanner = ResponseScanner::new(RESULTS, deprecate_eof)
        .caching_metadata()
        .capturing_definitions();
    let progress = scanner.scan(&wire.bytes).unwrap();
    assert_eq!(
        progress,
        Progress {
            consumed: wire.bytes.len(),
            scan: Scan::Done
        }
    );
    scanner
}

#[test]
fn with_metadata_caching_the_column_count_says_whether_definitions_follow() {
    for deprecate_eof in [true, false] {
        let end = |w: Wire| match deprecate_eof {
            true => w.ok_fe(AUTOCOMMIT),
            false => w.eof(AUTOCOMMIT),
        };
        let meta_eof = |w: Wire| match deprecate_eof {
            true => w,
            false => w.eof(AUTOCOMMIT),
        };
        // Definitions follow: they are captured, headers included.
        let sent =
            end(meta_eof(cached_count(Wire::new(), 2, true).column("a").column("b")).row("1"));
        let mut scanner = scan_cached(&sent, deprecate_eof);
        let count = scanner.take_column_count().unwrap();
        assert_eq!(scanner.take_column_count(), None, "taken once");
        assert!(count.follows);
        assert_eq!((count.seq, count.follows_offset), (1, 5));
        let columns = Wire::new().packet(&[]).column("a").column("b").bytes[4..].to_vec();
        let mut columns = columns;
        number_packets(&mut columns, 2);
        assert_eq!(scanner.take_captured().unwrap(), columns);

        // Skipped: the rows come next (after the EOF without DEPRECATE_EOF).
        let skipped = end(meta_eof(cached_count(Wire::new(), 2, false))
            .row("1")
            .row("2"));
        let mut scanner = scan_cached(&skipped, deprecate_eof);
        let count = scanner.take_column_count().unwrap();
        assert!(!count.follows);
        assert_eq!(skipped.bytes[count.follows_offset], 0);
        assert_eq!(scanner.take_captured(), Some(Vec::new()));
        assert_eq!(
            split_scan_cached(&skipped.bytes, deprecate_eof),
            skipped.bytes.len()
        );
    }
    // Without the capability the byte is not there; with it, it must be.
    let mut scanner = ResponseScanner::new(RESULTS, true);
    let extra = cached_count(Wire::new(), 1, true);
    assert!(scanner.scan(&extra.bytes).is_err());
    let mut scanner = ResponseScanner::new(RESULTS, true).caching_metadata();
    let missing = Wire::new().count(1);
    assert!(scanner.scan(&missing.bytes).is_err());
    let mut scanner = ResponseScanner::new(RESULTS, true).caching_metadata();
    let bad = Wire::new().packet(&[1, 2]);
    assert!(scanner.scan(&bad.bytes).is_err());
}

fn split_scan_cached(bytes: &[u8], deprecate_eof: bool) -> usize {
    let mut scanner = ResponseScanner::new(RESULTS, deprecate_eof).caching_metadata();
    let mut consumed = 0;
    for end in 1..=bytes.len() {
        let progress = scanner.scan(&bytes[consumed..end]).unwrap();
        consumed += progress.consumed;
        if progress.scan == Scan::Done {
            break;
        }
    }
    consumed
}

#[test]
fn a_prepared_statements_column_definitions_are_told_from_its_parameters() {
    for deprecate_eof in [true, false] {
        let mut wire = Wire::new().prepare_ok(7, 2, 1).column("?");
        if !deprecate_eof {
            wire = wire.eof(AUTOCOMMIT);
        }
        let columns_at = wire.bytes.len();
        wire = wire.column("a").column("b");
        let columns_end = wire.bytes.len();
        if !deprecate_eof {
            wire = wire.eof(AUTOCOMMIT);
        }
        let mut scanner = ResponseScanner::new(Expect::Prepare, deprecate_eof)
            .caching_metadata()
            .capturing_definitions();
        assert_eq!(scanner.scan(&wire.bytes).unwrap().scan, Scan::Done);
        let ok = scanner.take_prepare_ok().unwrap();
        let definitions = scanner.take_captured().unwrap();
        let mut expected = wire.bytes[columns_at..columns_end].to_vec();
        number_packets(&mut expected, 0);
        let from_prepare = column_definitions(&definitions, Some(&ok), deprecate_eof);
        assert_eq!(from_prepare.as_ref(), Some(&expected));

        // The same columns in an execution's result are the same bytes.
        let mut executed = cached_count(Wire::new(), 2, true).column("a").column("b");
        executed = match deprecate_eof {
            true => executed.ok_fe(AUTOCOMMIT),
            false => executed.eof(AUTOCOMMIT).eof(AUTOCOMMIT),
        };
        let mut scanner = scan_cached(&executed, deprecate_eof);
        let captured = scanner.take_captured().unwrap();
        assert_eq!(
            column_definitions(&captured, None, deprecate_eof),
            from_prepare
        );
        assert_eq!(column_definitions(&[], None, deprecate_eof), None);
    }
}

/// A MariaDB progress report: stage `stage` of 2, 10.000 % done.
fn progress_report(wire: Wire, stage: u8) -> Wire {
    let mut p = vec![0xFF, 0xFF, 0xFF, stage, 2];
    p.extend_from_slice(&10_000u32.to_le_bytes()[..3]);
    put_lenenc(&mut p, 17);
    p.extend_from_slice(b"copy to tmp table");
    wire.packet(&p)
}

#[test]
fn progress_reports_come_before_a_result_and_do_not_end_it() {
    let scan = |wire: &Wire, progress: bool| {
        let mut scanner = ResponseScanner::new(RESULTS, true);
        if progress {
            scanner = scanner.reporting_progress();
        }
        let scanned = scanner.scan(&wire.bytes).unwrap();
        (scanned, scanner)
    };
    let ok = progress_report(progress_report(Wire::new(), 1), 2).ok(AUTOCOMMIT);
    let rows = progress_report(Wire::new(), 1).result_set(true, 2, AUTOCOMMIT);
    let err = progress_report(Wire::new(), 1).err(1062);
    for (wire, error) in [(&ok, None), (&rows, None), (&err, Some(1062))] {
        let (scanned, scanner) = scan(wire, true);
        assert_eq!(scanned.consumed, wire.bytes.len());
        assert_eq!(scanned.scan, Scan::Done);
        assert_eq!(scanner.error(), error);
        assert_eq!(scanner.last_seq(), Some(wire.seq - 1));
    }
    // Reports arriving a byte at a time wait to be whole, as OK packets do.
    let mut scanner = ResponseScanner::new(RESULTS, true).reporting_progress();
    let mut consumed = 0;
    for end in 1..=ok.bytes.len() {
        consumed += scanner.scan(&ok.bytes[consumed..end]).unwrap().consumed;
    }
    assert!(scanner.is_done() && consumed == ok.bytes.len());
    // On a connection that did not negotiate them, 0xFFFF is an error code
    // like another, and ends the response.
    let (scanned, scanner) = scan(&ok, false);
    assert_eq!(scanned.scan, Scan::Done);
    assert_eq!(scanner.error(), Some(0xFFFF));
    assert!(scanned.consumed < ok.bytes.len());
}
