// Send ticket.create with a Kafka client that is not this project's (kafkajs), then print the
// resulting event and command result.   npm install kafkajs && node examples/kafkajs-create-ticket.js 127.0.0.1:9092
const { Kafka, logLevel } = require('kafkajs');
const { randomUUID } = require('crypto');

const broker = process.argv[2] || '127.0.0.1:9092';
const ticketId = randomUUID();
const command = {
  message_id: randomUUID(),
  type: 'ticket.create',
  actor: { user_id: randomUUID(), role: 'customer', customer_id: randomUUID() },
  payload: { ticket_id: ticketId, title: 'Printer on fire', description: 'It really is on fire.' },
};

(async () => {
  const kafka = new Kafka({ clientId: 'kafkajs-example', brokers: [broker], logLevel: logLevel.ERROR });
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic: 'tickets.commands.v1', messages: [{ key: ticketId, value: JSON.stringify(command) }] });
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: `kafkajs-example-${Date.now()}` });
  await consumer.connect();
  await consumer.subscribe({ topics: ['tickets.events.v1', 'tickets.command-results.v1'], fromBeginning: true });
  let seen = 0;
  setTimeout(() => { console.error('no answer within 30 s'); process.exit(1); }, 30000);
  await consumer.run({
    eachMessage: async ({ topic, message }) => {
      if (message.key && message.key.toString() === ticketId) {
        console.log(topic, message.value.toString());
        if (++seen === 2) process.exit(0);
      }
    },
  });
})();
