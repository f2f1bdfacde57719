"""The Certificate Transparency protocol, and nothing of the pipeline: the log list
(loglist, loglist_sync), shared types and the client contract (types), RFC 6962 and
static-ct-api clients side by side (rfc6962, static; `client.open_client` picks one), signed
tree heads and checkpoints (sth), Merkle trees and proofs (merkle), tiles (tiles), leaf
structures (leaf) and how politely each log is read (limits)."""
