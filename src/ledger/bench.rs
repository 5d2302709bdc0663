//! Verify benchmark (placeholder replaced below).
