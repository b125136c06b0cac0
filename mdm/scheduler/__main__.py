"""`python -m mdm.scheduler`: the scheduler command, as `hikeshi serve` starts its child."""

from mdm.scheduler.cli import scheduler_command

if __name__ == "__main__":
    scheduler_command(prog_name="hikeshi scheduler")
