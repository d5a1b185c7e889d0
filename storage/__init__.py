"""Persistence for the recommender: users, chats, every list shown, and every 👍/👎/undo click.

storage.db makes the engine, migrates the schema (Alembic) and makes sessions; storage.models holds the
tables; storage.repository the functions that read and write them inside the caller's transaction.
Not for: ranking (recsys/), dialogue (dialogue/) or UI wiring (app.py).
"""
