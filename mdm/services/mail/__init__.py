"""Outgoing e-mail: the mail server (set in the console, or the environment), one SMTP
conversation per message, and the outbox of mails to people (approvers told of a wipe)."""
