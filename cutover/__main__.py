from cutover.cli.main import main

main()
