//! Bounce, complaint and auto-reply classification of one raw message.
