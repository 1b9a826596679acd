//! Mailbox sources: Maildir, mbox and IMAP, each yielding raw messages once.
