//! headway-config (being written).
