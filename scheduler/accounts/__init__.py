"""Organizer accounts: who may sign in to the dashboard, with which role and chapter.

`store` keeps them, `passwords` hashes with argon2id, `links` issues one-time links that set
a password, `lockout` slows down guessing, `scope` says what an account may do, `audit`
records every action.
"""
