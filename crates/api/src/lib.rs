//! headway-api (being written).
