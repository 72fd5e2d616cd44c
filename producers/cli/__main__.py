from producers.cli.app import main

main()
