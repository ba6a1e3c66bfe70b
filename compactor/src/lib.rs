//! Long-term storage maintenance: the block planner, downsampling, retention, the shipper that
//! uploads blocks to object storage in Thanos's layout, and the bucket tools (`ls`, `inspect`,
//! `verify`, `mark`, `cleanup`).
