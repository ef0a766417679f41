//! A bounded set of recently seen ids (the tasks a cancel signal named).

use std::collections::HashSet;

/// A bounded set of recently seen ids (oldest forgotten first).
#[derive(Default)]
pub(super) struct RecentIds {
    ids: HashSet<String>,
    order: std::collections::VecDeque<String>,
}

impl RecentIds {
    const CAPACITY: usize = 16_384;

    pub(super) fn insert(&mut self, id: String) {
        if self.ids.insert(id.clone()) {
            self.order.push_back(id);
            if self.order.len() > Self::CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.ids.remove(&old);
                }
            }
        }
    }

    pub(super) fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}
