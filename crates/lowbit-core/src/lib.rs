//! lowbit-core (being written)
