from sfsc_deploy.cli import main

main()
