//! lowbit-cuda (placeholder)
