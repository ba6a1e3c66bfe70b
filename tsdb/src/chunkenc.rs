//! TODO: chunkenc
