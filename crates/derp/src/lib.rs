//! headway-derp (being written).
