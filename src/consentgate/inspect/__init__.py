"""The archive inspector (member-side): which data of a member's own archive the regime uses, and for what."""
