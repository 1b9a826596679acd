//! Contacts: CSV import (validation, dedupe, consent), export and erasure.
