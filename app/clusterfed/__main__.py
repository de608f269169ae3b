from clusterfed.cli.main import run_program

run_program()
