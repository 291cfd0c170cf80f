from baton_cli.main import main

main()
