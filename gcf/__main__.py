from gcf.cli import main

main()
