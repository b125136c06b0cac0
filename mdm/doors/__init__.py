"""The device doors: Apple check-in/connect, the Android agent, SCEP, enrollment pages, health."""
