from qetool.cli import main

main()
