//! headway-mapper (being written).
