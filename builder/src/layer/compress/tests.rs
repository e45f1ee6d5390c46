//! Tests of layer compression: determinism across worker counts, interoperability with other
//! decoders, magic detection, multi-member gzip and multi-frame zstd.

use super::*;

/// Deterministic pseudo-random but compressible bytes: text-like runs with noise, so
/// blocks compress to different sizes and back-references cross block boundaries.
fn sample(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x1234_5678;
    let words: &[&[u8]] = &[b"layer ", b"tar ", b"kiln ", b"digest ", b"\n", b"overlay "];
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        if state.is_multiple_of(7) {
            out.push((state >> 8) as u8);
        } else {
            out.extend_from_slice(words[(state as usize >> 3) % words.len()]);
        }
    }
    out.truncate(len);
    out
}

fn compress_with(compression: Compression, workers: usize, data: &[u8], chunk: usize) -> Vec<u8> {
    let mut w = CompressWriter::with_workers(Vec::new(), compression, workers).unwrap();
    for piece in data.chunks(chunk.max(1)) {
        w.write_all(piece).unwrap();
    }
    w.finish().unwrap()
}

fn gzip_with(workers: usize, data: &[u8], chunk: usize) -> Vec<u8> {
    compress_with(Compression::Gzip, workers, data, chunk)
}

fn zstd_with(workers: usize, data: &[u8], chunk: usize) -> Vec<u8> {
    compress_with(Compression::Zstd, workers, data, chunk)
}

/// The compressed size of each zstd frame in `stream`, in order.
fn zstd_frames(mut stream: &[u8]) -> Vec<usize> {
    let mut frames = Vec::new();
    while !stream.is_empty() {
        let n = zstd::zstd_safe::find_frame_compressed_size(stream).unwrap();
        frames.push(n);
        stream = &stream[n..];
    }
    frames
}

fn multi_gz(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::bufread::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn ours(bytes: &[u8]) -> (Compression, Vec<u8>) {
    let mut d = decompress(bytes).unwrap();
    let mut out = Vec::new();
    d.read_to_end(&mut out).unwrap();
    (d.compression(), out)
}

#[test]
fn parallel_gzip_is_identical_for_any_worker_count() {
    // 3.5 blocks: full blocks, a partial last block, and the dictionary hand-off.
    let data = sample(GZIP_BLOCK * 7 / 2);
    let one = gzip_with(1, &data, 100_000);
    let two = gzip_with(2, &data, 7_777);
    let four = gzip_with(4, &data, GZIP_BLOCK + 3);
    assert_eq!(one, two);
    assert_eq!(one, four);
    assert!(
        one.len() < data.len() / 2,
        "compressed {} of {}",
        one.len(),
        data.len()
    );
    assert_eq!(multi_gz(&one), data);
    assert_eq!(ours(&one), (Compression::Gzip, data.clone()));
    let mut single = Vec::new();
    flate2::read::GzDecoder::new(&one[..])
        .read_to_end(&mut single)
        .unwrap();
    assert_eq!(single, data, "one gzip member");
}

#[test]
fn system_gzip_decodes_parallel_output() {
    let Ok(status) = std::process::Command::new("gzip").arg("--version").output() else {
        crate::testutil::skip("no gzip binary");
        return;
    };
    assert!(status.status.success());
    let data = sample(GZIP_BLOCK * 2 + 12_345);
    let gz = gzip_with(2, &data, 65_536);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.gz");
    std::fs::write(&path, &gz).unwrap();
    let out = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, data);
    let test = std::process::Command::new("gzip")
        .arg("-t")
        .arg(&path)
        .status()
        .unwrap();
    assert!(test.success());
}

#[test]
fn gzip_header_matches_flate2_and_empty_input_is_valid() {
    let mut reference =
        flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
    reference.write_all(b"x").unwrap();
    let reference = reference.finish().unwrap();
    assert_eq!(reference[..10], GZIP_HEADER);
    for data in [&b""[..], b"x", &sample(1000)] {
        let gz = gzip_with(2, data, 10);
        assert_eq!(gz[..10], GZIP_HEADER);
        assert_eq!(multi_gz(&gz), data);
        let n = gz.len();
        assert_eq!(gz[n - 4..], (data.len() as u32).to_le_bytes());
    }
}

#[test]
fn parallel_zstd_is_identical_for_any_worker_count() {
    // 2.5 blocks: two full frames and a partial last one.
    let data = sample(ZSTD_BLOCK * 5 / 2);
    let one = zstd_with(1, &data, 100_000);
    let two = zstd_with(2, &data, 7_777);
    let four = zstd_with(4, &data, ZSTD_BLOCK + 3);
    assert_eq!(one, two);
    assert_eq!(one, four);
    assert!(
        one.len() < data.len() / 2,
        "compressed {} of {}",
        one.len(),
        data.len()
    );
    assert_eq!(zstd_frames(&one).len(), 3);
    for frame in [&one[..], &one[one.len() - zstd_frames(&one)[2]..]] {
        // Each frame records its content size (bit 5 of the descriptor: single segment, or
        // bits 6–7: a size field) and carries a checksum (bit 2).
        assert_ne!(frame[4] & 0b1110_0000, 0, "content size");
        assert_ne!(frame[4] & 0b100, 0, "checksum");
    }
    assert_eq!(ours(&one), (Compression::Zstd, data.clone()));
    assert_eq!(zstd::stream::decode_all(&one[..]).unwrap(), data);
}

#[test]
fn system_zstd_decodes_parallel_output() {
    let Ok(status) = std::process::Command::new("zstd").arg("--version").output() else {
        crate::testutil::skip("no zstd binary");
        return;
    };
    assert!(status.status.success());
    let data = sample(ZSTD_BLOCK * 2 + 12_345);
    let zst = zstd_with(2, &data, 65_536);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.zst");
    std::fs::write(&path, &zst).unwrap();
    let out = std::process::Command::new("zstd")
        .args(["-q", "-d", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, data);
}

#[test]
fn empty_zstd_stream_is_one_empty_frame() {
    for workers in [1, 2] {
        let zst = zstd_with(workers, b"", 1);
        assert_eq!(zstd_frames(&zst).len(), 1);
        assert_eq!(ours(&zst), (Compression::Zstd, Vec::new()));
    }
}

#[test]
fn one_core_gives_the_same_bytes() {
    // `taskset -c N`: the default worker count follows the affinity mask, so a thread pinned
    // to one core compresses inline; the bytes must equal those of several workers.
    let data = sample(ZSTD_BLOCK * 2 + GZIP_BLOCK / 3);
    let pinned = std::thread::spawn({
        let data = data.clone();
        move || {
            let allowed = rustix::thread::sched_getaffinity(None).unwrap();
            let first = (0..rustix::thread::CpuSet::MAX_CPU)
                .find(|&cpu| allowed.is_set(cpu))
                .unwrap();
            let mut one = rustix::thread::CpuSet::new();
            one.set(first);
            rustix::thread::sched_setaffinity(None, &one).unwrap();
            assert_eq!(default_workers(), 1);
            [Compression::Gzip, Compression::Zstd].map(|compression| {
                let mut w = CompressWriter::new(Vec::new(), compression).unwrap();
                w.write_all(&data).unwrap();
                w.finish().unwrap()
            })
        }
    })
    .join()
    .unwrap();
    assert_eq!(pinned[0], gzip_with(3, &data, 50_000));
    assert_eq!(pinned[1], zstd_with(3, &data, 50_000));
}

#[test]
fn zstd_is_deterministic_and_checksummed() {
    let data = sample(300_000);
    let compress = |chunk: usize| {
        let mut w = CompressWriter::new(Vec::new(), Compression::Zstd).unwrap();
        for piece in data.chunks(chunk) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap()
    };
    let a = compress(4096);
    let b = compress(100_000);
    assert_eq!(a, b);
    assert_eq!(a[..4], ZSTD_MAGIC);
    // Frame header descriptor bit 2: content checksum present.
    assert_ne!(a[4] & 0b100, 0);
    assert_eq!(ours(&a), (Compression::Zstd, data.clone()));
    let mut corrupt = a.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert!(
        decompress(&corrupt[..])
            .unwrap()
            .read_to_end(&mut Vec::new())
            .is_err()
    );
}

#[test]
fn decompress_detects_by_magic() {
    let tar_like = b"etc/\0\0\0\0not compressed".to_vec();
    let cases: Vec<(&str, Vec<u8>, Compression, Vec<u8>)> = vec![
        (
            "plain",
            tar_like.clone(),
            Compression::None,
            tar_like.clone(),
        ),
        ("empty", Vec::new(), Compression::None, Vec::new()),
        ("short", vec![0x1f], Compression::None, vec![0x1f]),
        (
            "gzip",
            gzip_with(1, b"hello", 5),
            Compression::Gzip,
            b"hello".to_vec(),
        ),
        (
            "none writer",
            {
                let mut w = CompressWriter::new(Vec::new(), Compression::None).unwrap();
                w.write_all(b"raw").unwrap();
                w.finish().unwrap()
            },
            Compression::None,
            b"raw".to_vec(),
        ),
    ];
    for (name, input, want_kind, want) in cases {
        // One byte at a time, to prove detection does not rely on one fill_buf.
        let reader = io::BufReader::with_capacity(1, &input[..]);
        let mut d = decompress(reader).unwrap();
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        assert_eq!(d.compression(), want_kind, "{name}");
        assert_eq!(out, want, "{name}");
    }
}

#[test]
fn multi_member_gzip_and_trailing_zeros() {
    // T-ADD-03: `cat a.gz b.gz`, a foreign encoder's member, zero padding after the end.
    let mut foreign = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    foreign.write_all(b" and foreign").unwrap();
    let foreign = foreign.finish().unwrap();
    let mut stream = gzip_with(2, b"first", 5);
    stream.extend(gzip_with(1, b" second", 3));
    stream.extend(&foreign);
    assert_eq!(ours(&stream).1, b"first second and foreign");
    assert_eq!(multi_gz(&stream), b"first second and foreign");

    let mut padded = stream.clone();
    padded.extend([0u8; 1024]);
    assert_eq!(ours(&padded).1, b"first second and foreign");

    let mut garbage = stream.clone();
    garbage.extend(b"\0\0junk");
    let err = decompress(&garbage[..])
        .unwrap()
        .read_to_end(&mut Vec::new())
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);

    let truncated = &stream[..stream.len() - 3];
    assert!(
        decompress(truncated)
            .unwrap()
            .read_to_end(&mut Vec::new())
            .is_err()
    );

    let mut bad_crc = gzip_with(1, b"payload", 7);
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 1;
    assert!(
        decompress(&bad_crc[..])
            .unwrap()
            .read_to_end(&mut Vec::new())
            .is_err()
    );
}
