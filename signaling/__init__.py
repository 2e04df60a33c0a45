"""Signaling: the wire protocol, rooms, participants and what each role may do."""
