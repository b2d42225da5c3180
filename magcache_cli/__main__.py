from magcache_cli.cli import main

main()
