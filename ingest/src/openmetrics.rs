//! OpenMetrics 1.0 text parser (nom).
