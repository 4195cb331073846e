//! headway-server (being written).
