//! headway-policy (being written).
