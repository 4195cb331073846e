//! headway-state (being written).
