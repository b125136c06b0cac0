"""Activation Lock on supervised Apple devices: the escrowed bypass code (sealed at rest,
revealed only to an administrator after a wipe, audited), what the device says about Activation
Lock (on / off / unknown), and the per-unit setting inherited down the org tree.

Queueing the commands that carry all this (ActivationLockBypassCode, Settings with MDMOptions)
lives with the commands (commands.activation_lock): commands read this package, never the reverse.
"""
