//! headway-store (being written).
