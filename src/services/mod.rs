//! The negotiation and config services (placeholder: filled in by its owner).
