//! The prompt cache: attention state of recently seen token sequences, reused by longest common prefix.
//!
//! A phone flow sends the same system prompt (persona, flow instructions) on every turn of every call,
//! and each turn of one call repeats the previous turns. Keeping the [`KvCache`] of recent sequences and
//! resuming from the longest prefix a new prompt shares with one of them means a turn pays only for its
//! new tokens. Matching is on token ids, so it needs no hint from the caller, and a hit is exact: the
//! reused state is precisely what computing those tokens again would give.

use crate::model::KvCache;

#[derive(Debug)]
struct Entry {
    tokens: Vec<u32>,
    kv: KvCache,
    last_used: u64,
}

/// Recently computed sequences, bounded by a total token budget (least recently used goes first).
#[derive(Debug)]
pub struct PromptCache {
    entries: Vec<Entry>,
    max_tokens: usize,
    clock: u64,
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PromptCache {
    /// `max_tokens` bounds the positions held over all entries (memory ≈ tokens × per-token KV size).
    pub fn new(max_tokens: usize) -> Self {
        Self {
            entries: Vec::new(),
            max_tokens,
            clock: 0,
        }
    }

    /// The state for the longest cached prefix of `tokens`, at most `tokens.len() - 1` long so the caller
    /// always computes at least the last token (it needs that token's logits). `None` on a miss.
    pub fn lookup(&mut self, tokens: &[u32]) -> candle_core::Result<Option<(KvCache, usize)>> {
        self.clock += 1;
        let limit = tokens.len().saturating_sub(1);
        let best = self
            .entries
            .iter_mut()
            .map(|e| (common_prefix(&e.tokens, tokens).min(limit), e))
            .filter(|(n, _)| *n > 0)
            .max_by_key(|(n, _)| *n);
        let Some((n, entry)) = best else {
            return Ok(None);
        };
        entry.last_used = self.clock;
        let mut kv = entry.kv.clone();
        kv.truncate(n)?;
        Ok(Some((kv, n)))
    }

    /// Remembers the state after `tokens` (`kv.len()` must equal `tokens.len()`). An entry that is a
    /// prefix of the new one is replaced: the new entry serves every lookup the old one did.
    pub fn insert(&mut self, tokens: Vec<u32>, kv: KvCache) {
        debug_assert_eq!(tokens.len(), kv.len());
        if tokens.is_empty() || tokens.len() > self.max_tokens {
            return;
        }
        self.clock += 1;
        self.entries
            .retain(|e| !(e.tokens.len() <= tokens.len() && tokens.starts_with(&e.tokens)));
        if self
            .entries
            .iter()
            .any(|e| e.tokens.len() >= tokens.len() && e.tokens.starts_with(&tokens))
        {
            return; // already covered by a longer entry
        }
        self.entries.push(Entry {
            tokens,
            kv,
            last_used: self.clock,
        });
        while self.entries.iter().map(|e| e.tokens.len()).sum::<usize>() > self.max_tokens {
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(i, _)| i);
            match oldest {
                Some(i) => {
                    self.entries.swap_remove(i);
                }
                None => break,
            }
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A KvCache with no layers still tracks its length, which is all the bookkeeping needs.
    fn kv(len: usize) -> KvCache {
        let mut kv = KvCache::new(0);
        kv.set_len_for_tests(len);
        kv
    }

    #[test]
    fn longest_prefix_wins_and_last_token_is_left_to_compute() -> candle_core::Result<()> {
        let mut c = PromptCache::new(100);
        c.insert(vec![1, 2, 3], kv(3));
        c.insert(vec![7, 8, 9, 10], kv(4));
        let (k, n) = c.lookup(&[7, 8, 9, 11, 12])?.expect("hit");
        assert_eq!((n, k.len()), (3, 3));
        let (_, n) = c.lookup(&[1, 2, 3])?.expect("hit");
        assert_eq!(n, 2, "the last token is always recomputed");
        assert!(c.lookup(&[5, 6])?.is_none());
        let (_, n) = c.lookup(&[7, 8, 9, 10, 11])?.expect("hit");
        assert_eq!(n, 4);
        Ok(())
    }

    #[test]
    fn extension_replaces_prefix_and_budget_evicts_oldest() {
        let mut c = PromptCache::new(10);
        c.insert(vec![1, 2], kv(2));
        c.insert(vec![1, 2, 3, 4], kv(4));
        assert_eq!(c.len(), 1);
        c.insert(vec![5, 6, 7, 8], kv(4));
        c.insert(vec![9, 9, 9], kv(3));
        assert_eq!(c.len(), 2, "the oldest entry made room");
    }
}
