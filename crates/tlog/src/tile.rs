//! C2SP tlog-tiles: where each tile and entry bundle lives, and their bytes.
//!
//! A tile at level L holds up to 256 consecutive hashes of tree level 8·L;
//! tile N at level L covers hashes 256·N … 256·N+255. The rightmost tile of
//! a tree whose size is not a multiple is *partial*, at `….p/W` with W
//! hashes. An entry bundle is the level-0 tile's entries, each a 2-byte
//! big-endian length and the bytes.

use crate::TlogError;
use crate::hash::Hash;

/// Hashes (or entries) in a full tile.
pub const WIDTH: u64 = 256;
/// Tree levels one tile spans.
pub const HEIGHT: u32 = 8;

/// Which file: a hash tile at `level`, or the entry bundle (`level = None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileId {
    /// Tile level; `None` for an entry bundle.
    pub level: Option<u8>,
    /// Tile index within its level.
    pub index: u64,
    /// Hashes or entries in it: 256 for a full tile, 1…255 for a partial one.
    pub width: u16,
}

impl TileId {
    /// A hash tile.
    pub fn hashes(level: u8, index: u64, width: u16) -> TileId {
        TileId {
            level: Some(level),
            index,
            width,
        }
    }

    /// An entry bundle.
    pub fn entries(index: u64, width: u16) -> TileId {
        TileId {
            level: None,
            index,
            width,
        }
    }

    /// True for a partial tile.
    pub fn is_partial(&self) -> bool {
        u64::from(self.width) < WIDTH
    }

    /// The same tile, full width.
    pub fn full(&self) -> TileId {
        TileId {
            width: WIDTH as u16,
            ..*self
        }
    }

    /// The tile path relative to the log prefix, `tile/L/N[.p/W]` or
    /// `tile/entries/N[.p/W]`; N in 3-digit groups, all but the last `x`-prefixed.
    pub fn path(&self) -> String {
        let mut s = String::from("tile/");
        match self.level {
            Some(l) => s.push_str(&l.to_string()),
            None => s.push_str("entries"),
        }
        s.push('/');
        s.push_str(&encode_index(self.index));
        if self.is_partial() {
            s.push_str(&format!(".p/{}", self.width));
        }
        s
    }

    /// The directory holding this tile's partial versions (`….p`).
    pub fn partial_dir(&self) -> String {
        let full = self.full().path();
        format!("{full}.p")
    }

    /// Parses a tile path strictly (no other spelling of a path is
    /// accepted, so a path is also safe to join onto a directory).
    pub fn parse(path: &str) -> Result<TileId, TlogError> {
        let bad = |d: &str| TlogError::MalformedTile {
            path: path.chars().take(200).collect(),
            detail: d.to_string(),
        };
        let rest = path
            .strip_prefix("tile/")
            .ok_or_else(|| bad("not under tile/"))?;
        let (level_s, rest) = rest.split_once('/').ok_or_else(|| bad("no index"))?;
        let level = if level_s == "entries" {
            None
        } else {
            let l: u8 = level_s.parse().map_err(|_| bad("level is not a number"))?;
            if l.to_string() != level_s || l > 63 {
                return Err(bad("level out of range"));
            }
            Some(l)
        };
        let (index_s, width) = match rest.split_once(".p/") {
            Some((i, w)) => {
                let width: u16 = w.parse().map_err(|_| bad("width is not a number"))?;
                if width == 0 || u64::from(width) >= WIDTH || width.to_string() != w {
                    return Err(bad("partial width must be 1..255"));
                }
                (i, width)
            }
            None => (rest, WIDTH as u16),
        };
        let groups: Vec<&str> = index_s.split('/').collect();
        let mut index: u64 = 0;
        for (i, g) in groups.iter().enumerate() {
            let last = i + 1 == groups.len();
            let digits = if last {
                *g
            } else {
                g.strip_prefix('x')
                    .ok_or_else(|| bad("inner index groups need an x"))?
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("index groups are three digits"));
            }
            let v: u64 = digits.parse().map_err(|_| bad("index"))?;
            index = index
                .checked_mul(1000)
                .and_then(|x| x.checked_add(v))
                .ok_or_else(|| bad("index too large"))?;
        }
        let id = TileId {
            level,
            index,
            width,
        };
        if id.path() != path {
            return Err(bad("not the canonical spelling"));
        }
        Ok(id)
    }
}

fn encode_index(mut n: u64) -> String {
    let mut groups = vec![format!("{:03}", n % 1000)];
    n /= 1000;
    while n > 0 {
        groups.push(format!("x{:03}", n % 1000));
        n /= 1000;
    }
    groups.reverse();
    groups.join("/")
}

/// Hashes in the tile at `level`, `index` for a tree of `size` leaves
/// (0 when the tree does not reach it).
pub fn width_for(level: u8, index: u64, size: u64) -> u16 {
    let at_level = size >> (u32::from(level) * HEIGHT);
    let start = index.saturating_mul(WIDTH);
    at_level.saturating_sub(start).min(WIDTH) as u16
}

/// Encodes a hash tile.
pub fn encode_hashes(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

/// Decodes a hash tile, which must hold exactly `width` hashes.
pub fn decode_hashes(path: &str, data: &[u8], width: u16) -> Result<Vec<Hash>, TlogError> {
    if data.len() != usize::from(width) * 32 {
        return Err(TlogError::MalformedTile {
            path: path.to_string(),
            detail: format!("{} bytes, expected {} hashes", data.len(), width),
        });
    }
    Ok(data
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

/// Encodes an entry bundle; every entry must fit a 2-byte length.
pub fn encode_bundle<T: AsRef<[u8]>>(entries: &[T]) -> Result<Vec<u8>, TlogError> {
    let mut out = Vec::new();
    for e in entries {
        let e = e.as_ref();
        let len = u16::try_from(e.len()).map_err(|_| TlogError::EntryTooLarge(e.len()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Decodes an entry bundle (input from the network: every length is checked).
pub fn decode_bundle(path: &str, mut data: &[u8]) -> Result<Vec<Vec<u8>>, TlogError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let bad = |d: String| TlogError::MalformedTile {
            path: path.to_string(),
            detail: d,
        };
        if data.len() < 2 {
            return Err(bad(format!("entry {} has a truncated length", out.len())));
        }
        let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let body = data
            .get(2..2 + len)
            .ok_or_else(|| bad(format!("entry {} is truncated", out.len())))?;
        out.push(body.to_vec());
        data = &data[2 + len..];
        if out.len() as u64 > WIDTH {
            return Err(bad("more than 256 entries".into()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of C2SP tlog-tiles ("Merkle Tree" section): index
    /// 1234067 is `x001/x234/067`, partial width 8 is `.p/8`.
    #[test]
    fn paths_match_the_spec_examples() {
        assert_eq!(
            TileId::hashes(0, 1234067, 256).path(),
            "tile/0/x001/x234/067"
        );
        assert_eq!(
            TileId::hashes(0, 1234067, 8).path(),
            "tile/0/x001/x234/067.p/8"
        );
        assert_eq!(
            TileId::entries(1234067, 8).path(),
            "tile/entries/x001/x234/067.p/8"
        );
        assert_eq!(TileId::hashes(1, 0, 256).path(), "tile/1/000");
        assert_eq!(TileId::hashes(2, 1000, 5).path(), "tile/2/x001/000.p/5");
    }

    #[test]
    fn parse_round_trips_and_rejects_other_spellings() {
        for id in [
            TileId::hashes(0, 1234067, 8),
            TileId::hashes(3, 0, 256),
            TileId::entries(999, 255),
            TileId::entries(1000, 256),
        ] {
            assert_eq!(TileId::parse(&id.path()).unwrap(), id);
        }
        for bad in [
            "tile/0/1",
            "tile/0/001/002",
            "tile/0/x001",
            "tile/00/001",
            "tile/0/001.p/0",
            "tile/0/001.p/256",
            "tile/0/001.p/08",
            "tile/0/x000/001",
            "tile/../001",
            "tile/entries/../../etc",
            "checkpoint",
        ] {
            assert!(TileId::parse(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn widths_follow_the_tree_size() {
        assert_eq!(width_for(0, 0, 5), 5);
        assert_eq!(width_for(0, 0, 300), 256);
        assert_eq!(width_for(0, 1, 300), 44);
        assert_eq!(width_for(1, 0, 300), 1);
        assert_eq!(width_for(1, 0, 255), 0);
        assert_eq!(width_for(0, 2, 300), 0);
    }

    #[test]
    fn bundles_round_trip_and_truncation_is_an_error() {
        let b = encode_bundle(&[b"".to_vec(), b"abc".to_vec()]).unwrap();
        assert_eq!(b, [0, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(
            decode_bundle("t", &b).unwrap(),
            vec![b"".to_vec(), b"abc".to_vec()]
        );
        assert!(decode_bundle("t", &b[..b.len() - 1]).is_err());
        assert!(decode_bundle("t", &[0]).is_err());
        assert!(encode_bundle(&[vec![0u8; 70000]]).is_err());
    }
}
