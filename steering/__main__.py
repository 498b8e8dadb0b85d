from steering.cli.main import main

main()
